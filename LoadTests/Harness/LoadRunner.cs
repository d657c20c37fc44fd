using System.Diagnostics;
using System.Globalization;
using System.Text;
using Microsoft.Extensions.Logging;

namespace LoadTests.Harness;

/// <summary>
/// Runs scenarios side by side (NBomber's <c>NBomberRunner.RegisterScenarios(…).Run()</c>), shows their progress
/// (a live table on a terminal, plain lines otherwise), checks their thresholds at every reporting interval (stopping
/// the run early when one reaches its abort count), and writes Markdown, text, JSON, CSV and HTML reports.
/// </summary>
public sealed class LoadRunner
{
    private static readonly object FolderGate = new();
    private readonly List<ScenarioProps> scenarios = [];
    private readonly List<Threshold> everyScenario = [];
    private string reportFolder = "load-reports";
    private TimeSpan progressInterval = TimeSpan.FromSeconds(5);
    private TimeSpan reportingInterval = TimeSpan.FromSeconds(10);
    private double maxGeneratorLagMs = 50;
    private Func<RunResult, Task<AfterRun>>? afterRun;
    private TimeSpan stopLimit = ScenarioRunner.DefaultStopLimit;

    public static LoadRunner RegisterScenarios(params ScenarioProps[] props)
    {
        var runner = new LoadRunner();
        runner.scenarios.AddRange(props);
        return runner;
    }

    public LoadRunner WithReportFolder(string folder)
    {
        reportFolder = folder;
        return this;
    }

    /// <summary>
    /// Thresholds for every registered scenario (not an NBomber call): each scenario gets its own copy, a step
    /// threshold only where the scenario records that step.
    /// </summary>
    public LoadRunner WithThresholds(params Threshold[] bounds)
    {
        everyScenario.AddRange(bounds);
        return this;
    }

    /// <summary>How often thresholds are checked during the run (NBomber's <c>WithReportingInterval</c>).</summary>
    public LoadRunner WithReportingInterval(TimeSpan interval)
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(interval, TimeSpan.Zero);
        reportingInterval = interval;
        return this;
    }

    /// <summary>
    /// Above this lateness p99 of the generator's own timer (<see cref="GeneratorProbe"/>), the run fails as measuring
    /// the generator rather than the server.
    /// </summary>
    public LoadRunner WithGeneratorLagBound(double milliseconds)
    {
        maxGeneratorLagMs = milliseconds;
        return this;
    }

    public LoadRunner WithProgressInterval(TimeSpan interval)
    {
        progressInterval = interval;
        return this;
    }

    /// <summary>
    /// Checks that need the run to be over (e.g. the server's close reasons against the victims'): run after the
    /// scenarios' clean steps, before the reports are written, so the reports and the verdict include them.
    /// </summary>
    public LoadRunner WithAfterRun(Func<RunResult, Task<AfterRun>> check)
    {
        afterRun = check;
        return this;
    }

    public async Task<RunResult> RunAsync(ILogger logger, TextWriter output, CancellationToken cancellationToken)
    {
        var startedUtc = DateTimeOffset.UtcNow;
        var startedAt = Stopwatch.GetTimestamp();
        var runners = scenarios.Select(s => new ScenarioRunner(s with { Thresholds = [.. s.Thresholds, .. everyScenario] }, logger, stopLimit)).ToList();
        var checks = runners.SelectMany(r => r.Thresholds.Select(t => new ThresholdCheck(r, t))).ToList();
        var problems = new List<string>();
        using var abort = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        GeneratorLoad generator;
        await using (var probe = new GeneratorProbe())
        {
            var all = Task.WhenAll(runners.Select(r => r.RunAsync(abort.Token)));
            try
            {
                await Task.WhenAll(Progress.For(output, progressInterval).RunAsync(runners, all), WatchThresholdsAsync(runners, checks, all, abort));
                await all;
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                // The harness's own failure: whatever was measured until then is still reported, with this as a problem.
                await all.ContinueWith(_ => { }, TaskScheduler.Default);
                problems.Add($"the run failed: {ex.GetType().Name}: {ex.Message}");
            }

            generator = probe.Snapshot();
        }

        foreach (var check in checks)
        {
            check.Check(final: true);
        }

        var stats = runners.SelectMany(r => r.Snapshot()).ToList();
        var thresholds = checks.Select(c => c.Result()).ToList();
        problems.InsertRange(0, thresholds.Where(t => !t.Passed).Select(Describe));
        problems.AddRange(runners.SelectMany(r => r.Problems));
        var warnings = thresholds.Where(t => t.NoData).Select(NoDataWarning).ToList();
        if (generator.LagP99Ms > maxGeneratorLagMs)
        {
            // Its threads ran late, so every latency it measured includes its own delay: the run says nothing about the server.
            problems.Add(string.Create(
                CultureInfo.InvariantCulture,
                $"the load generator was the bottleneck: its own timer ran late by p99 {generator.LagP99Ms:0} ms (bound {maxGeneratorLagMs} ms) at {generator.CpuPercent:0} % CPU, so the latencies above are partly its own: run fewer copies, or measure with the native client (./run.sh bench fanout)"));
        }

        var abortedBy = checks.FirstOrDefault(c => c.Aborted);
        var folder = NewFolder(startedUtc);
        var result = new RunResult(stats, problems, folder, generator)
        {
            Warnings = warnings,
            Thresholds = thresholds,
            Timelines = runners.SelectMany(r => r.Timelines()).ToList(),
            StartedUtc = startedUtc,
            Elapsed = Stopwatch.GetElapsedTime(startedAt),
            AbortedBy = abortedBy is null ? null : $"{abortedBy.Runner.Name}/{abortedBy.Threshold.CheckedStep}: {abortedBy.Threshold.Description}",
        };
        await output.WriteLineAsync();
        await output.WriteLineAsync(Markdown(stats, problems, generator, warnings));

        AfterRun after;
        try
        {
            after = afterRun is null ? new AfterRun([], [], []) : await afterRun(result);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // E.g. the server's metrics endpoint gone: the run cannot be judged on them, so it fails saying why, and
            // the statistics measured so far still go into the reports.
            after = new AfterRun([], [], [$"after-run checks failed: {ex.GetType().Name}: {ex.Message}"]);
        }

        result = result with
        {
            BrokenThresholds = [.. problems, .. after.Problems],
            CloseReasons = after.CloseReasons,
            Checks = after.Checks,
        };
        Directory.CreateDirectory(folder);
        await ReportWriter.WriteAllAsync(folder, result, cancellationToken);
        return result;
    }

    /// <summary>How long stopping copies or draining invocations may take (default 30 s) before the run goes on without them.</summary>
    public LoadRunner WithStopLimit(TimeSpan limit)
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(limit, TimeSpan.Zero);
        stopLimit = limit;
        return this;
    }

    /// <summary>
    /// The run's report folder: its UTC start, this process's id (several suite processes loading one server start
    /// in the same second), and a count if that is still taken.
    /// </summary>
    private string NewFolder(DateTimeOffset startedUtc)
    {
        var name = string.Create(CultureInfo.InvariantCulture, $"{startedUtc.UtcDateTime:yyyyMMdd-HHmmss}-{Environment.ProcessId}");
        lock (FolderGate)
        {
            // Taken and made under one lock: two runs of this process that end together must not both pick the first free name.
            var folder = Path.Combine(reportFolder, name);
            for (var n = 2; Directory.Exists(folder); n++)
            {
                folder = Path.Combine(reportFolder, string.Create(CultureInfo.InvariantCulture, $"{name}-{n}"));
            }

            Directory.CreateDirectory(folder);
            return folder;
        }
    }

    private static string Describe(ThresholdResult t)
    {
        var where = $"{t.Scenario}/{t.Step}: {t.Description}";
        var threw = t.ExceptionMessage is null ? string.Empty : $" (its predicate threw: {t.ExceptionMessage})";
        return t.AbortedRun
            ? string.Create(CultureInfo.InvariantCulture, $"{where}{threw} (broken at {t.AbortWhenErrorCount} checks, the first at {t.FirstFailedAtSeconds:0.#} s: the run was stopped early)")
            : where + threw;
    }

    /// <summary>A threshold that judged nothing: said, not failed (see <see cref="ThresholdResult.NoData"/>).</summary>
    internal static string NoDataWarning(ThresholdResult t) =>
        $"{t.Scenario}/{t.Step}: {t.Description}: no data: the step recorded nothing in the measured run, so this threshold judged nothing "
        + "(e.g. connect when every player connected during the warm-up, or a scenario that ran no invocation)";

    /// <summary>
    /// Checks every threshold at each reporting interval until the run ends; stops the run at an abort count. A
    /// scenario whose measured run is over is not checked again (its drain and clean step are not load, and its frozen
    /// statistics would only add checks to the count) until the end-of-run check.
    /// </summary>
    private async Task WatchThresholdsAsync(IReadOnlyList<ScenarioRunner> runners, IReadOnlyList<ThresholdCheck> checks, Task done, CancellationTokenSource abort)
    {
        if (checks.Count == 0)
        {
            return;
        }

        using var timer = new PeriodicTimer(reportingInterval);
        while (!done.IsCompleted && !runners.All(r => r.RecordingEnded))
        {
            var tick = timer.WaitForNextTickAsync(CancellationToken.None).AsTask();
            if (await Task.WhenAny(done, tick) == done)
            {
                return;
            }

            foreach (var check in checks)
            {
                if (check.Runner.RecordingEnded)
                {
                    continue;
                }

                if (check.Check(final: false))
                {
                    // The run is stopping: what it does on the way (stopping copies, clean steps) is not judged again
                    // until the end-of-run check.
                    await abort.CancelAsync();
                    return;
                }
            }
        }
    }

    public static string Markdown(IReadOnlyList<StepSnapshot> stats, IReadOnlyList<string> failures, GeneratorLoad? generator = null, IReadOnlyList<string>? warnings = null)
    {
        var text = new StringBuilder();
        text.AppendLine("| scenario | step | ok | fail | fail % | rps | min | mean | p50 | p75 | p95 | p99 | p99.9 | max | stddev | bytes | status codes |");
        text.AppendLine("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
        foreach (var s in stats)
        {
            text.AppendLine(string.Create(
                CultureInfo.InvariantCulture,
                $"| {s.Scenario} | {s.Step} | {s.Ok} | {s.Fail} | {s.FailPercent:0.00} | {s.Rps:0.0} | {s.MinMs:0.00} | {s.MeanMs:0.00} | {s.P50Ms:0.00} | {s.P75Ms:0.00} | {s.P95Ms:0.00} | {s.P99Ms:0.00} | {s.P999Ms:0.00} | {s.MaxMs:0.00} | {s.StdDevMs:0.00} | {s.Bytes} | {ReportWriter.Codes(s)} |"));
        }

        text.AppendLine();
        text.AppendLine("Latencies in milliseconds.");
        if (generator is not null)
        {
            text.AppendLine(ReportWriter.GeneratorLine(generator));
        }

        foreach (var warning in warnings ?? [])
        {
            text.AppendLine($"Warning: {warning}");
        }

        text.AppendLine(failures.Count == 0 ? "All thresholds held." : "Thresholds broken:\n" + string.Join('\n', failures.Select(f => $"- {f}")));
        return text.ToString();
    }

    /// <summary>One threshold of one scenario, and what its checks found.</summary>
    private sealed class ThresholdCheck(ScenarioRunner runner, Threshold threshold)
    {
        private readonly object gate = new();
        private int checks;
        private int failed;
        private double? firstFailedAt;
        private bool? heldAtEnd;
        private string? exceptionMessage;

        public ScenarioRunner Runner => runner;

        public Threshold Threshold => threshold;

        public bool Aborted { get; private set; }

        /// <summary>Checks the threshold on the statistics so far; true when this check reached its abort count.</summary>
        public bool Check(bool final)
        {
            var measured = runner.MeasuredElapsed;
            if (measured is null || (!final && measured < threshold.StartCheckAfter))
            {
                return false;
            }

            var stats = runner.Snapshot().FirstOrDefault(s => s.Step == threshold.CheckedStep);
            if (stats is null)
            {
                return false; // nothing recorded for it yet: nothing to judge
            }

            bool holds;
            string? threw = null;
            try
            {
                holds = threshold.Predicate(stats);
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                // NBomber counts it as a broken check and keeps the message (ThresholdResult.ExceptionMsg): a bound that
                // cannot be evaluated has not held, and the run must not lose its reports to it.
                holds = false;
                threw = $"{ex.GetType().Name}: {ex.Message}";
            }

            lock (gate)
            {
                checks++;
                exceptionMessage ??= threw;
                if (final)
                {
                    heldAtEnd = holds;
                }

                if (holds)
                {
                    return false;
                }

                failed++;
                firstFailedAt ??= measured.Value.TotalSeconds;
                if (!final && !Aborted && failed >= threshold.AbortWhenErrorCount)
                {
                    Aborted = true;
                    return true;
                }

                return false;
            }
        }

        public ThresholdResult Result()
        {
            lock (gate)
            {
                return new ThresholdResult(
                    runner.Name, threshold.CheckedStep, threshold.Description, checks, failed, firstFailedAt, heldAtEnd, Aborted, threshold.AbortWhenErrorCount, exceptionMessage);
            }
        }
    }
}

/// <summary>
/// What a run produced: the statistics, the problems that fail it (broken thresholds, a generator that fell behind,
/// and whatever the after-run checks found), the report folder and the generator's own load.
/// </summary>
public sealed record RunResult(IReadOnlyList<StepSnapshot> Stats, IReadOnlyList<string> BrokenThresholds, string ReportFolder, GeneratorLoad Generator)
{
    public IReadOnlyList<ThresholdResult> Thresholds { get; init; } = [];

    /// <summary>What every report says without failing the run: thresholds that had no data to judge.</summary>
    public IReadOnlyList<string> Warnings { get; init; } = [];

    public IReadOnlyList<StepTimeline> Timelines { get; init; } = [];

    public DateTimeOffset StartedUtc { get; init; }

    /// <summary>From the start of the scenarios to the end of their clean steps.</summary>
    public TimeSpan Elapsed { get; init; }

    /// <summary>The threshold that stopped the run early (scenario/step: description), or null.</summary>
    public string? AbortedBy { get; init; }

    public IReadOnlyList<CloseReasonRow> CloseReasons { get; init; } = [];

    public IReadOnlyList<CheckRow> Checks { get; init; } = [];

    public bool Passed => BrokenThresholds.Count == 0;
}

/// <summary>What the after-run checks found: close reasons expected and observed, other counts compared, and problems.</summary>
public sealed record AfterRun(IReadOnlyList<CloseReasonRow> CloseReasons, IReadOnlyList<CheckRow> Checks, IReadOnlyList<string> Problems);

/// <summary>One close reason: how many closes the victims' modes predict, and how many the server counted.</summary>
public sealed record CloseReasonRow(string Reason, double Expected, double Observed)
{
    public bool Matches => Expected.Equals(Observed);
}

/// <summary>Any other count compared after the run (e.g. sessions resumed, the server's active connections).</summary>
public sealed record CheckRow(string Name, string Expected, string Observed, bool Holds);
