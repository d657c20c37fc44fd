using System.Globalization;
using System.Text;
using Microsoft.Extensions.Logging;

namespace LoadTests.Harness;

/// <summary>A bound a run must stay within; checked on the final statistics.</summary>
public sealed record Threshold(string Description, Func<StepSnapshot, bool> Applies, Func<StepSnapshot, bool> Holds);

/// <summary>
/// Runs scenarios side by side (NBomber's <c>NBomberRunner.RegisterScenarios(…).Run()</c>), shows their progress
/// (a live table on a terminal, plain lines otherwise), and writes Markdown, CSV and HTML reports.
/// </summary>
public sealed class LoadRunner
{
    private readonly List<ScenarioProps> scenarios = [];
    private readonly List<Threshold> thresholds = [];
    private string reportFolder = "load-reports";
    private TimeSpan progressInterval = TimeSpan.FromSeconds(5);
    private double maxGeneratorLagMs = 50;

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

    public LoadRunner WithThresholds(params Threshold[] bounds)
    {
        thresholds.AddRange(bounds);
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

    public async Task<RunResult> RunAsync(ILogger logger, TextWriter output, CancellationToken cancellationToken)
    {
        var runners = scenarios.Select(s => new ScenarioRunner(s, logger)).ToList();
        GeneratorLoad generator;
        await using (var probe = new GeneratorProbe())
        {
            var running = runners.Select(r => r.RunAsync(cancellationToken)).ToList();
            var all = Task.WhenAll(running);
            await Progress.For(output, progressInterval).RunAsync(runners, all);
            await all;
            generator = probe.Snapshot();
        }

        var stats = runners.SelectMany(r => r.Snapshot()).ToList();
        var failures = thresholds
            .SelectMany(t => stats.Where(t.Applies).Where(s => !t.Holds(s)).Select(s => $"{s.Scenario}/{s.Step}: {t.Description}"))
            .ToList();
        if (generator.LagP99Ms > maxGeneratorLagMs)
        {
            // Its threads ran late, so every latency it measured includes its own delay: the run says nothing about the server.
            failures.Add(string.Create(
                CultureInfo.InvariantCulture,
                $"the load generator was the bottleneck: its own timer ran late by p99 {generator.LagP99Ms:0} ms (bound {maxGeneratorLagMs} ms) at {generator.CpuPercent:0} % CPU, so the latencies above are partly its own: run fewer copies, or measure with the native client (./run.sh bench fanout)"));
        }

        var folder = Path.Combine(reportFolder, DateTime.UtcNow.ToString("yyyyMMdd-HHmmss", CultureInfo.InvariantCulture));
        Directory.CreateDirectory(folder);
        await File.WriteAllTextAsync(Path.Combine(folder, "report.md"), Markdown(stats, failures, generator), cancellationToken);
        await File.WriteAllTextAsync(Path.Combine(folder, "report.csv"), Csv(stats), cancellationToken);
        var timelines = runners.SelectMany(r => r.Timelines()).ToDictionary(p => p.Key, p => p.Value, StringComparer.Ordinal);
        await File.WriteAllTextAsync(Path.Combine(folder, "report.html"), HtmlReport.Render(stats, timelines, failures), cancellationToken);
        return new RunResult(stats, failures, folder, generator);
    }

    public static string Markdown(IReadOnlyList<StepSnapshot> stats, IReadOnlyList<string> failures, GeneratorLoad? generator = null)
    {
        var text = new StringBuilder();
        text.AppendLine("| scenario | step | ok | fail | fail % | rps | min | mean | p50 | p75 | p95 | p99 | p99.9 | max | stddev | bytes | status codes |");
        text.AppendLine("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
        foreach (var s in stats)
        {
            var codes = string.Join(", ", s.StatusCodes.OrderByDescending(c => c.Value).Select(c => $"{c.Key}: {c.Value}"));
            text.AppendLine(string.Create(
                CultureInfo.InvariantCulture,
                $"| {s.Scenario} | {s.Step} | {s.Ok} | {s.Fail} | {s.FailPercent:0.00} | {s.Rps:0.0} | {s.MinMs:0.00} | {s.MeanMs:0.00} | {s.P50Ms:0.00} | {s.P75Ms:0.00} | {s.P95Ms:0.00} | {s.P99Ms:0.00} | {s.P999Ms:0.00} | {s.MaxMs:0.00} | {s.StdDevMs:0.00} | {s.Bytes} | {codes} |"));
        }

        text.AppendLine();
        text.AppendLine("Latencies in milliseconds.");
        if (generator is not null)
        {
            text.AppendLine(string.Create(
                CultureInfo.InvariantCulture,
                $"Load generator: CPU {generator.CpuPercent:0} % of one core ({generator.Cores} cores); its own timer ran late by p50 {generator.LagP50Ms:0.0} ms, p99 {generator.LagP99Ms:0.0} ms, max {generator.LagMaxMs:0.0} ms."));
        }

        text.AppendLine(failures.Count == 0 ? "All thresholds held." : "Thresholds broken:\n" + string.Join('\n', failures.Select(f => $"- {f}")));
        return text.ToString();
    }

    private static string Csv(IReadOnlyList<StepSnapshot> stats)
    {
        var text = new StringBuilder("scenario,step,ok,fail,rps,min_ms,mean_ms,p50_ms,p75_ms,p95_ms,p99_ms,p999_ms,max_ms,stddev_ms,bytes\n");
        foreach (var s in stats)
        {
            text.AppendLine(string.Create(
                CultureInfo.InvariantCulture,
                $"{s.Scenario},{s.Step},{s.Ok},{s.Fail},{s.Rps:0.0},{s.MinMs:0.000},{s.MeanMs:0.000},{s.P50Ms:0.000},{s.P75Ms:0.000},{s.P95Ms:0.000},{s.P99Ms:0.000},{s.P999Ms:0.000},{s.MaxMs:0.000},{s.StdDevMs:0.000},{s.Bytes}"));
        }

        return text.ToString();
    }
}

/// <summary>What a run produced: the statistics, the broken thresholds, the report folder.</summary>
public sealed record RunResult(IReadOnlyList<StepSnapshot> Stats, IReadOnlyList<string> BrokenThresholds, string ReportFolder, GeneratorLoad Generator);
