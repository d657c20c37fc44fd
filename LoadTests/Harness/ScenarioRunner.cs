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

    private readonly ScenarioProps props;
    private readonly ILogger logger;
    private readonly ConcurrentDictionary<string, StepStats> steps = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<int, Dictionary<string, object>> instanceData = new();
    private readonly List<(CancellationTokenSource Stop, Task Loop)> copies = [];
    private readonly ConcurrentDictionary<Task, byte> inFlight = new();
    private volatile bool recording;
    private long started;
    private long recordingStarted;
    private long recordingEnded;
    private int nextInstance;

    public ScenarioRunner(ScenarioProps props, ILogger logger)
    {
        this.props = props;
        this.logger = logger;
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
    public TimeSpan? MeasuredElapsed => recordingStarted == 0 ? null : Stopwatch.GetElapsedTime(recordingStarted);

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
            await props.Init(logger);
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

            recording = true;
            recordingStarted = Stopwatch.GetTimestamp();
            await RunSimulationsAsync(props.Simulations, cancellationToken);
            recordingEnded = Stopwatch.GetTimestamp();
        }
        finally
        {
            await SetCopiesAsync(0);
            await DrainInFlightAsync();
            if (recordingStarted != 0 && recordingEnded == 0)
            {
                recordingEnded = Stopwatch.GetTimestamp();
            }

            // Invocations that started in the measured run are counted when they finish, even after it; what the
            // clean step causes (a player's StateUpdates read while it says Goodbye) is not.
            recording = false;

            if (props.Clean is not null)
            {
                await props.Clean(logger);
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

    private Task DrainInFlightAsync() =>
        Task.WhenAll(inFlight.Keys).WaitAsync(TimeSpan.FromSeconds(30), CancellationToken.None).ContinueWith(_ => { }, TaskScheduler.Default);

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
        var instance = Interlocked.Increment(ref nextInstance);
        var task = InvokeAsync(instance, 1, dueAt, cancellationToken);
        inFlight[task] = 0;
        _ = task.ContinueWith(t => inFlight.TryRemove(t, out _), TaskScheduler.Default);
    }

    private async Task SetCopiesAsync(int target)
    {
        while (copies.Count < target)
        {
            var stop = new CancellationTokenSource();
            var number = copies.Count;
            copies.Add((stop, Task.Run(() => CopyLoopAsync(number, stop.Token))));
        }

        if (copies.Count > target)
        {
            // All at once: stopping thousands of copies one after another would take as long as their slowest
            // invocations added up.
            var stopping = copies[target..];
            copies.RemoveRange(target, copies.Count - target);
            foreach (var (stop, _) in stopping)
            {
                await stop.CancelAsync();
            }

            await Task.WhenAll(stopping.Select(c => c.Loop));
            foreach (var (stop, _) in stopping)
            {
                stop.Dispose();
            }
        }
    }

    private async Task CopyLoopAsync(int instance, CancellationToken stop)
    {
        for (long invocation = 1; !stop.IsCancellationRequested; invocation++)
        {
            await InvokeAsync(instance, invocation, Stopwatch.GetTimestamp(), stop);
        }
    }

    private async Task InvokeAsync(int instance, long invocation, long dueAt, CancellationToken cancellationToken)
    {
        var context = new ScenarioContext(
            new ScenarioInfo(props.Name, instance), invocation, logger, [], instanceData.GetOrAdd(instance, _ => []), this, cancellationToken);
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

    internal void Record(string step, Response response, TimeSpan latency)
    {
        if (recording)
        {
            var second = (int)Stopwatch.GetElapsedTime(recordingStarted).TotalSeconds;
            steps.GetOrAdd(step, s => new StepStats(props.Name, s)).Record(response, latency, second);
        }
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
