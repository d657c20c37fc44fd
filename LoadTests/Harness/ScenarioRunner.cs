using System.Collections.Concurrent;
using System.Diagnostics;
using Microsoft.Extensions.Logging;

namespace LoadTests.Harness;

/// <summary>
/// Drives one scenario through its load simulations and keeps its statistics. Closed models run copies that loop;
/// open models start invocations on a schedule. Open-model latency is measured from the moment an invocation was
/// due, not from when it actually started, so a server that stalls is charged for the queue it causes: that is
/// the correction for coordinated omission.
/// </summary>
public sealed class ScenarioRunner
{
    /// <summary>The step every invocation's own outcome is recorded as (NBomber's scenario-level statistics).</summary>
    public const string InvocationStep = "global";
    private static readonly TimeSpan ControlTick = TimeSpan.FromMilliseconds(10);

    /// <summary>How long stopping copies, or draining open-model invocations, may take before the run goes on without them.</summary>
    public static readonly TimeSpan DefaultStopLimit = TimeSpan.FromSeconds(30);

    private readonly ScenarioProps props;
    private readonly ILogger logger;
    private readonly ConcurrentDictionary<string, StepStats> steps = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<int, Dictionary<string, object>> instanceData = new();
    private readonly List<(CancellationTokenSource Stop, Task Loop, int Instance)> copies = [];

    // The instance number each copy position had when it last ran, so a copy that comes back after the warm-up or a
    // ramp-down is the same copy (its ScenarioInstanceData and its ClientPool slot); -1: take a fresh number.
    private readonly List<int> positionNumbers = [];
    private readonly ConcurrentDictionary<Task, byte> inFlight = new();
    private readonly ConcurrentQueue<string> problems = new();
    private readonly TimeSpan stopLimit;
    private volatile bool recording;
    private long started;
    private long recordingStarted;
    private long recordingEnded;

    // One counter for closed copies and open-model invocations alike: numbers never collide in a scenario mixing both
    // models (two at once on one number would share a ScenarioInstanceData dictionary and a ClientPool slot).
    private int nextInstance = -1;

    public ScenarioRunner(ScenarioProps props, ILogger logger, TimeSpan? stopLimit = null)
    {
        this.props = props;
        this.logger = logger;
        this.stopLimit = stopLimit ?? DefaultStopLimit;
    }

    public string Name => props.Name;

    /// <summary>Copies running (closed model) or invocations in flight (open model), for progress lines.</summary>
    public int CurrentLoad => copies.Count + inFlight.Count;

    /// <summary>The current injection rate per second (open model), 0 for closed.</summary>
    public double CurrentRate { get; private set; }

    public TimeSpan Elapsed => started == 0 ? TimeSpan.Zero : Stopwatch.GetElapsedTime(started);

    public TimeSpan TotalDuration => props.WarmUpDuration + props.Simulations.Aggregate(TimeSpan.Zero, (a, s) => a + s.During);

    public IReadOnlyList<Threshold> Thresholds => props.Thresholds;

    /// <summary>Time since the measured run began (after the warm-up); null before it has.</summary>
    public TimeSpan? MeasuredElapsed => Volatile.Read(ref recordingStarted) is var start && start == 0 ? null : Stopwatch.GetElapsedTime(start);

    /// <summary>
    /// The measured load simulations are over (or were stopped): what follows (draining, the clean step) is not load,
    /// so the thresholds are not checked on it again until the end-of-run check.
    /// </summary>
    public bool RecordingEnded => Volatile.Read(ref recordingEnded) != 0;

    /// <summary>What went wrong in the harness itself (a clean step that threw, copies that did not stop): each fails the run.</summary>
    public IReadOnlyList<string> Problems => [.. problems];

    /// <summary>Seconds from this scenario's start (before its warm-up) to its measured run's start, for the charts' time axis.</summary>
    public double MeasuredStartSecond => recordingStarted == 0 ? 0 : Stopwatch.GetElapsedTime(started, recordingStarted).TotalSeconds;

    public IReadOnlyList<StepSnapshot> Snapshot()
    {
        // Rates are over the load simulations only: the clean step (closing every client) is not part of the load.
        var measured = recordingStarted == 0 ? TimeSpan.Zero
            : recordingEnded == 0 ? Stopwatch.GetElapsedTime(recordingStarted)
            : Stopwatch.GetElapsedTime(recordingStarted, recordingEnded);
        return steps.Values.OrderBy(s => s.Step == InvocationStep ? string.Empty : s.Step, StringComparer.Ordinal)
            .Select(s => s.Snapshot(measured)).ToList();
    }

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        if (props.Init is not null)
        {
            try
            {
                await props.Init(logger);
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                // A scenario that could not start is a failed run with its reason, not an exception that loses the
                // other scenarios' reports.
                problems.Enqueue($"{Name}: its init step failed ({ex.GetType().Name}: {ex.Message}); the scenario did not run");
                return;
            }
        }

        started = Stopwatch.GetTimestamp();
        try
        {
            if (props.WarmUpDuration > TimeSpan.Zero)
            {
                // NBomber's warm-up: the scenario's own simulations from their beginning, for the warm-up's length
                // (a ramp is as far along as it would be by then), recording nothing; then everything stops and the
                // measured run starts the simulations again from their beginning.
                await RunSimulationsAsync(WarmUpPart(props.Simulations, props.WarmUpDuration), cancellationToken);
                await SetCopiesAsync(0);
                await DrainInFlightAsync();
            }

            // The start first, then the switch: a Record that sees recording on must see its start too, or it would
            // compute its second from timestamp 0 (the machine's uptime) and grow a timeline that long.
            Volatile.Write(ref recordingStarted, Stopwatch.GetTimestamp());
            recording = true;
            await RunSimulationsAsync(props.Simulations, cancellationToken);
            Volatile.Write(ref recordingEnded, Stopwatch.GetTimestamp());
        }
        finally
        {
            if (Volatile.Read(ref recordingStarted) != 0 && Volatile.Read(ref recordingEnded) == 0)
            {
                Volatile.Write(ref recordingEnded, Stopwatch.GetTimestamp());
            }

            await SetCopiesAsync(0);
            await DrainInFlightAsync();

            // Invocations that started in the measured run are counted when they finish, even after it; what the
            // clean step causes (a player's StateUpdates read while it says Goodbye) is not.
            recording = false;

            if (props.Clean is not null)
            {
                try
                {
                    await props.Clean(logger);
                }
                catch (Exception ex) when (ex is not OutOfMemoryException)
                {
                    // Counted, not thrown: the other scenarios' clean steps, the after-run checks and the reports still run.
                    problems.Enqueue($"{Name}: its clean step failed ({ex.GetType().Name}: {ex.Message})");
                }
            }
        }
    }

    /// <summary>The simulations cut off at <paramref name="length"/>: what a warm-up of that length runs.</summary>
    public static IReadOnlyList<LoadSimulation> WarmUpPart(IReadOnlyList<LoadSimulation> simulations, TimeSpan length)
    {
        var part = new List<LoadSimulation>();
        var left = length;
        foreach (var simulation in simulations)
        {
            if (left <= TimeSpan.Zero)
            {
                break;
            }

            if (simulation.During <= left)
            {
                part.Add(simulation);
                left -= simulation.During;
                continue;
            }

            // A ramp cut short stops where it would be at that moment, not at its target.
            part.Add(simulation switch
            {
                LoadSimulation.RampingConstant ramp => new LoadSimulation.CutRamp(ramp, left),
                LoadSimulation.RampingInject ramp => new LoadSimulation.CutRamp(ramp, left),
                _ => simulation with { During = left },
            });
            left = TimeSpan.Zero;
        }

        return part;
    }

    private async Task RunSimulationsAsync(IReadOnlyList<LoadSimulation> simulations, CancellationToken cancellationToken)
    {
        double previousLoad = 0;
        foreach (var simulation in simulations)
        {
            await RunSimulationAsync(simulation, previousLoad, cancellationToken);
            previousLoad = LoadOf(simulation);
        }
    }

    private async Task DrainInFlightAsync()
    {
        var pending = inFlight.Keys.ToList();
        if (!await WithinAsync(Task.WhenAll(pending), stopLimit))
        {
            // Not waited on further: the run must end. What they do later is not in the statistics, and the scenario's
            // own after-run bookkeeping (e.g. chaos's close-reason tally) must not count on them having finished.
            problems.Enqueue(string.Create(
                System.Globalization.CultureInfo.InvariantCulture,
                $"{Name}: {pending.Count(t => !t.IsCompleted)} invocations were still running {stopLimit.TotalSeconds:0.#} s after the load stopped (not waited on further)"));
        }
    }

    /// <summary>Whether <paramref name="task"/> completed (in whatever way) within <paramref name="limit"/>.</summary>
    private static async Task<bool> WithinAsync(Task task, TimeSpan limit)
    {
        using var timeout = new CancellationTokenSource();
        var first = await Task.WhenAny(task, Task.Delay(limit, timeout.Token));
        await timeout.CancelAsync();
        return first == task;
    }

    private static double LoadOf(LoadSimulation simulation) => simulation switch
    {
        LoadSimulation.CutRamp cut => LoadOf(cut.Ramp),
        LoadSimulation.KeepConstant k => k.Copies,
        LoadSimulation.RampingConstant r => r.Copies,
        LoadSimulation.Inject i => i.Rate / i.Interval.TotalSeconds,
        LoadSimulation.RampingInject r => r.Rate / r.Interval.TotalSeconds,
        _ => 0,
    };

    private async Task RunSimulationAsync(LoadSimulation simulation, double previousLoad, CancellationToken cancellationToken)
    {
        var begin = Stopwatch.GetTimestamp();
        var due = 0.0;
        var lastTick = begin;
        while (!cancellationToken.IsCancellationRequested)
        {
            var now = Stopwatch.GetTimestamp();
            var elapsed = Stopwatch.GetElapsedTime(begin, now);
            if (elapsed >= simulation.During)
            {
                break;
            }

            var progress = simulation.During == TimeSpan.Zero ? 1 : elapsed / simulation.During;
            var shape = simulation;
            if (simulation is LoadSimulation.CutRamp cut)
            {
                // Progress along the whole ramp, which this part stops short of.
                progress = elapsed / cut.Ramp.During;
                shape = cut.Ramp;
            }

            switch (shape)
            {
                case LoadSimulation.KeepConstant keep:
                    CurrentRate = 0;
                    await SetCopiesAsync(keep.Copies);
                    break;
                case LoadSimulation.RampingConstant ramp:
                    CurrentRate = 0;
                    await SetCopiesAsync((int)Math.Round(previousLoad + ((ramp.Copies - previousLoad) * progress)));
                    break;
                case LoadSimulation.Inject or LoadSimulation.RampingInject:
                    await SetCopiesAsync(0);
                    var target = LoadOf(shape);
                    CurrentRate = shape is LoadSimulation.RampingInject ? previousLoad + ((target - previousLoad) * progress) : target;
                    var tick = Stopwatch.GetElapsedTime(lastTick, now).TotalSeconds;
                    due += tick * CurrentRate;
                    // Spread this tick's invocations evenly over it: each is charged from its own due time.
                    var count = (int)Math.Floor(due);
                    due -= count;
                    for (var k = 1; k <= count; k++)
                    {
                        StartOpenInvocation(lastTick + ((now - lastTick) * k / count), cancellationToken);
                    }

                    break;
                default:
                    CurrentRate = 0;
                    await SetCopiesAsync(0);
                    break;
            }

            lastTick = now;
            await Task.Delay(ControlTick, CancellationToken.None);
        }
    }

    private void StartOpenInvocation(long dueAt, CancellationToken cancellationToken)
    {
        // An open-model invocation is a copy of its own: a number of its own and a ScenarioInstanceData that is
        // dropped when it ends (kept, one per invocation, they would grow for as long as the run lasts).
        var instance = Interlocked.Increment(ref nextInstance);
        var task = InvokeAsync(instance, 1, dueAt, [], cancellationToken);
        inFlight[task] = 0;
        _ = task.ContinueWith(t => inFlight.TryRemove(t, out _), TaskScheduler.Default);
    }

    private async Task SetCopiesAsync(int target)
    {
        while (copies.Count < target)
        {
            var stop = new CancellationTokenSource();
            var position = copies.Count;
            if (positionNumbers.Count <= position)
            {
                positionNumbers.Add(-1);
            }

            if (positionNumbers[position] < 0)
            {
                positionNumbers[position] = Interlocked.Increment(ref nextInstance);
            }

            var number = positionNumbers[position];
            var data = instanceData.GetOrAdd(number, _ => []);
            copies.Add((stop, Task.Run(() => CopyLoopAsync(number, data, stop.Token)), number));
        }

        if (copies.Count > target)
        {
            // All at once: stopping thousands of copies one after another would take as long as their slowest
            // invocations added up.
            var stopping = copies[target..];
            copies.RemoveRange(target, copies.Count - target);
            foreach (var (stop, _, _) in stopping)
            {
                await stop.CancelAsync();
            }

            // Bounded: an invocation that ignores its cancellation token (or a write to a wedged server that never
            // completes) must not hang the run; such copies are reported and left behind.
            if (!await WithinAsync(Task.WhenAll(stopping.Select(c => c.Loop)), stopLimit))
            {
                var stuck = stopping.Where(c => !c.Loop.IsCompleted).ToList();
                problems.Enqueue(string.Create(
                    System.Globalization.CultureInfo.InvariantCulture,
                    $"{Name}: {stuck.Count} copies had not stopped {stopLimit.TotalSeconds:0.#} s after being told to (not waited on further)"));
                foreach (var copy in stuck)
                {
                    // Its number stays with the straggler: a copy started at that position later takes a fresh one,
                    // so the two never share a ScenarioInstanceData or a ClientPool slot.
                    var position = positionNumbers.IndexOf(copy.Instance);
                    if (position >= 0)
                    {
                        positionNumbers[position] = -1;
                    }
                }
            }

            foreach (var (stop, loop, _) in stopping)
            {
                if (loop.IsCompleted)
                {
                    stop.Dispose(); // a straggler may still read its token
                }
            }
        }
    }

    private async Task CopyLoopAsync(int instance, Dictionary<string, object> data, CancellationToken stop)
    {
        for (long invocation = 1; !stop.IsCancellationRequested; invocation++)
        {
            await InvokeAsync(instance, invocation, Stopwatch.GetTimestamp(), data, stop);
        }
    }

    private async Task InvokeAsync(int instance, long invocation, long dueAt, Dictionary<string, object> data, CancellationToken cancellationToken)
    {
        var context = new ScenarioContext(new ScenarioInfo(props.Name, instance), invocation, logger, [], data, this, cancellationToken);
        Response response;
        try
        {
            response = await props.Run(context);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            return; // stopped mid-invocation by the load shape, not a failure
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            response = Response.Fail(ex.GetType().Name, 0, ex.Message);
        }

        Record(InvocationStep, response, Stopwatch.GetElapsedTime(dueAt));
    }

    /// <summary>Records a step's outcome, if the measured run is on (the warm-up and the clean step are not recorded).</summary>
    public void Record(string step, Response response, TimeSpan latency)
    {
        if (!recording)
        {
            return;
        }

        var start = Volatile.Read(ref recordingStarted);
        if (start == 0)
        {
            return; // not started after all (a torn read): a second counted from timestamp 0 would be the machine's uptime
        }

        var second = (int)Math.Max(0, Stopwatch.GetElapsedTime(start).TotalSeconds);
        steps.GetOrAdd(step, s => new StepStats(props.Name, s)).Record(response, latency, second);
    }

    /// <summary>The per-second timeline of every step, for the reports' charts.</summary>
    public IReadOnlyList<StepTimeline> Timelines() =>
        steps.Values.OrderBy(s => s.Step == InvocationStep ? string.Empty : s.Step, StringComparer.Ordinal)
            .Select(s => new StepTimeline(s.Scenario, s.Step, s.Timeline(MeasuredStartSecond, MeasuredSeconds))).ToList();

    private double MeasuredSeconds => recordingStarted == 0 ? 0
        : recordingEnded == 0 ? Stopwatch.GetElapsedTime(recordingStarted).TotalSeconds
        : Stopwatch.GetElapsedTime(recordingStarted, recordingEnded).TotalSeconds;

    private sealed class ScenarioContext(
        ScenarioInfo info,
        long invocation,
        ILogger logger,
        Dictionary<string, object> data,
        Dictionary<string, object> instanceData,
        ScenarioRunner runner,
        CancellationToken token)
        : IScenarioContext
    {
        public ScenarioInfo ScenarioInfo => info;

        public long InvocationNumber => invocation;

        public ILogger Logger => logger;

        public CancellationToken ScenarioCancellationToken => token;

        public Dictionary<string, object> Data => data;

        public Dictionary<string, object> ScenarioInstanceData => instanceData;

        public void Record(string stepName, Response response, TimeSpan latency) => runner.Record(stepName, response, latency);
    }
}
