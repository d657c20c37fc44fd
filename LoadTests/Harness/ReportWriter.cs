using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace LoadTests.Harness;

/// <summary>
/// Writes a run's reports: <c>report.md</c>, <c>report.txt</c>, <c>report.json</c>, <c>report.csv</c> and
/// <c>report.html</c>, all from the same <see cref="RunResult"/>, so they never disagree.
/// </summary>
public static class ReportWriter
{
    private static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
    };

    private static readonly string[] StepHeader = ["scenario", "step", "ok", "fail", "fail%", "rps", "min", "mean", "p50", "p75", "p95", "p99", "p99.9", "max", "bytes", "status codes"];
    private static readonly string[] ThresholdHeader = ["scenario", "step", "threshold", "verdict", "checks"];
    private static readonly string[] ReasonHeader = ["reason", "expected", "observed", string.Empty];
    private static readonly string[] CheckHeader = ["check", "expected", "observed", string.Empty];

    public static async Task WriteAllAsync(string folder, RunResult result, CancellationToken cancellationToken)
    {
        await File.WriteAllTextAsync(Path.Combine(folder, "report.md"), Markdown(result), cancellationToken);
        await File.WriteAllTextAsync(Path.Combine(folder, "report.txt"), Text(result), cancellationToken);
        await File.WriteAllTextAsync(Path.Combine(folder, "report.json"), JsonText(result), cancellationToken);
        await File.WriteAllTextAsync(Path.Combine(folder, "report.csv"), Csv(result.Stats), cancellationToken);
        await File.WriteAllTextAsync(Path.Combine(folder, "report.html"), HtmlReport.Render(result), cancellationToken);
    }

    public static string Verdict(RunResult result) => result.Passed ? "passed" : "failed";

    internal static string Codes(StepSnapshot s) =>
        string.Join(", ", s.StatusCodes.OrderByDescending(c => c.Value).ThenBy(c => c.Key, StringComparer.Ordinal).Select(c => $"{c.Key}: {c.Value}"));

    internal static string GeneratorLine(GeneratorLoad generator) => string.Create(
        CultureInfo.InvariantCulture,
        $"Load generator: CPU {generator.CpuPercent:0} % of one core ({generator.Cores} cores); its own timer ran late by p50 {generator.LagP50Ms:0.0} ms, p99 {generator.LagP99Ms:0.0} ms, max {generator.LagMaxMs:0.0} ms.");

    internal static string ThresholdState(ThresholdResult t) =>
        t.AbortedRun ? "ABORTED the run"
        : t.HeldAtEnd is null ? "no data (judged nothing)"
        : t.Passed ? "held" : "BROKEN";

    internal static string ChecksText(ThresholdResult t) => string.Create(
        CultureInfo.InvariantCulture,
        $"{t.FailedChecks} of {t.Checks} checks broken{(t.FirstFailedAtSeconds is { } first ? $" (first at {first:0.#} s)" : string.Empty)}{(t.AbortWhenErrorCount is { } n ? $", aborts at {n}" : string.Empty)}{(t.ExceptionMessage is { } threw ? $"; its predicate threw: {threw}" : string.Empty)}");

    public static string Markdown(RunResult result)
    {
        var text = new StringBuilder();
        text.AppendLine(string.Create(CultureInfo.InvariantCulture, $"# Load report {result.StartedUtc:yyyy-MM-dd HH:mm:ss} UTC: {Verdict(result)}"));
        text.AppendLine();
        text.AppendLine(string.Create(CultureInfo.InvariantCulture, $"Ran {result.Elapsed.TotalSeconds:0.0} s{(result.AbortedBy is null ? string.Empty : $", stopped early by the threshold {result.AbortedBy}")}."));
        text.AppendLine();
        text.Append(LoadRunner.Markdown(result.Stats, result.BrokenThresholds, result.Generator, result.Warnings));
        if (result.Thresholds.Count > 0)
        {
            text.AppendLine();
            text.AppendLine("| scenario | step | threshold | verdict | checks |");
            text.AppendLine("|---|---|---|---|---|");
            foreach (var t in result.Thresholds)
            {
                text.AppendLine($"| {t.Scenario} | {t.Step} | {t.Description.Replace("|", "\\|", StringComparison.Ordinal)} | {ThresholdState(t)} | {ChecksText(t)} |");
            }
        }

        if (result.CloseReasons.Count > 0)
        {
            text.AppendLine();
            text.AppendLine("| close reason | expected | observed on the server |");
            text.AppendLine("|---|---:|---:|");
            foreach (var r in result.CloseReasons)
            {
                text.AppendLine(string.Create(CultureInfo.InvariantCulture, $"| {r.Reason} | {r.Expected} | {r.Observed} |"));
            }
        }

        if (result.Checks.Count > 0)
        {
            text.AppendLine();
            text.AppendLine("| check | expected | observed |");
            text.AppendLine("|---|---:|---:|");
            foreach (var c in result.Checks)
            {
                text.AppendLine($"| {c.Name} | {c.Expected} | {c.Observed} |");
            }
        }

        return text.ToString();
    }

    /// <summary>Plain text for a terminal or a mail: fixed-width columns, no markup.</summary>
    public static string Text(RunResult result)
    {
        var text = new StringBuilder();
        text.AppendLine(string.Create(CultureInfo.InvariantCulture, $"Load report {result.StartedUtc:yyyy-MM-dd HH:mm:ss} UTC"));
        text.AppendLine($"verdict: {Verdict(result).ToUpperInvariant()}");
        text.AppendLine(string.Create(CultureInfo.InvariantCulture, $"elapsed: {result.Elapsed.TotalSeconds:0.0} s"));
        if (result.AbortedBy is not null)
        {
            text.AppendLine($"stopped early by: {result.AbortedBy}");
        }

        text.AppendLine();
        text.AppendLine("Steps (latencies in ms)");
        Table(text, StepHeader, result.Stats.Select(s => new[]
        {
            s.Scenario, s.Step, N(s.Ok), N(s.Fail), F(s.FailPercent, "0.00"), F(s.Rps, "0.0"), F(s.MinMs), F(s.MeanMs), F(s.P50Ms), F(s.P75Ms), F(s.P95Ms),
            F(s.P99Ms), F(s.P999Ms), F(s.MaxMs), N(s.Bytes), Codes(s),
        }), 0, 1, 15);

        text.AppendLine();
        text.AppendLine("Thresholds");
        if (result.Thresholds.Count == 0)
        {
            text.AppendLine("  (none)");
        }
        else
        {
            Table(text, ThresholdHeader, result.Thresholds.Select(t => new[] { t.Scenario, t.Step, t.Description, ThresholdState(t), ChecksText(t) }), 0, 1, 2, 3, 4);
        }

        if (result.CloseReasons.Count > 0)
        {
            text.AppendLine();
            text.AppendLine("Close reasons (expected from the victims' modes, observed on the server)");
            Table(text, ReasonHeader, result.CloseReasons.Select(r => new[] { r.Reason, F(r.Expected, "0"), F(r.Observed, "0"), r.Matches ? "ok" : "MISMATCH" }), 0, 3);
        }

        if (result.Checks.Count > 0)
        {
            text.AppendLine();
            text.AppendLine("Other checks");
            Table(text, CheckHeader, result.Checks.Select(c => new[] { c.Name, c.Expected, c.Observed, c.Holds ? "ok" : "MISMATCH" }), 0, 3);
        }

        text.AppendLine();
        text.AppendLine(GeneratorLine(result.Generator));
        foreach (var warning in result.Warnings)
        {
            text.AppendLine();
            text.AppendLine($"Warning: {warning}");
        }

        text.AppendLine();
        text.AppendLine(result.Passed ? "All thresholds held and every check matched." : "Problems:");
        foreach (var problem in result.BrokenThresholds)
        {
            text.AppendLine($"  - {problem}");
        }

        return text.ToString();
    }

    /// <summary>Everything the other reports show, for programs: numbers as numbers, latencies in milliseconds.</summary>
    public static string JsonText(RunResult result)
    {
        var document = new
        {
            startedUtc = result.StartedUtc,
            elapsedSeconds = result.Elapsed.TotalSeconds,
            verdict = Verdict(result),
            abortedBy = result.AbortedBy,
            problems = result.BrokenThresholds,
            warnings = result.Warnings,

            // Every scenario with statistics or thresholds: one that recorded nothing still shows its thresholds.
            scenarios = result.Stats.Select(s => s.Scenario).Concat(result.Thresholds.Select(t => t.Scenario)).Distinct(StringComparer.Ordinal).Select(name => new
            {
                name,
                steps = result.Stats.Where(s => s.Scenario == name).Select(s => new
                {
                    name = s.Step,
                    ok = s.Ok,
                    fail = s.Fail,
                    failPercent = s.FailPercent,
                    rps = s.Rps,
                    latencyMs = new { min = s.MinMs, mean = s.MeanMs, p50 = s.P50Ms, p75 = s.P75Ms, p95 = s.P95Ms, p99 = s.P99Ms, p999 = s.P999Ms, max = s.MaxMs, stdDev = s.StdDevMs },
                    bytes = s.Bytes,
                    statusCodes = s.StatusCodes,
                }),
                thresholds = result.Thresholds.Where(t => t.Scenario == name).Select(t => new
                {
                    step = t.Step,
                    description = t.Description,
                    passed = t.Passed,
                    heldAtEnd = t.HeldAtEnd,
                    checks = t.Checks,
                    failedChecks = t.FailedChecks,
                    firstFailedAtSeconds = t.FirstFailedAtSeconds,
                    abortWhenErrorCount = t.AbortWhenErrorCount,
                    abortedRun = t.AbortedRun,
                    noData = t.NoData,
                    exceptionMessage = t.ExceptionMessage,
                }),
            }),
            closeReasons = result.CloseReasons.Select(r => new { reason = r.Reason, expected = r.Expected, observed = r.Observed, matches = r.Matches }),
            checks = result.Checks.Select(c => new { name = c.Name, expected = c.Expected, observed = c.Observed, holds = c.Holds }),
            generator = result.Generator,
            timelines = result.Timelines.Select(t => new
            {
                scenario = t.Scenario,
                step = t.Step,
                seconds = t.Points.Select(p => new
                {
                    second = p.Second, okPerSecond = p.Ok, failPerSecond = p.Fail, p50Ms = Finite(p.P50Ms), p95Ms = Finite(p.P95Ms), p99Ms = Finite(p.P99Ms),
                }),
            }),
        };
        return JsonSerializer.Serialize(document, Json);
    }

    public static string Csv(IReadOnlyList<StepSnapshot> stats)
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

    /// <summary>JSON has no NaN: a second without a latency is null.</summary>
    private static double? Finite(double value) => double.IsFinite(value) ? value : null;

    private static string N(long value) => value.ToString(CultureInfo.InvariantCulture);

    private static string F(double value, string format = "0.00") => value.ToString(format, CultureInfo.InvariantCulture);

    private static void Table(StringBuilder text, string[] header, IEnumerable<string[]> body, params int[] leftColumns)
    {
        var rows = new List<string[]> { header };
        rows.AddRange(body);
        var widths = Enumerable.Range(0, rows[0].Length).Select(c => rows.Max(r => r[c].Length)).ToArray();
        foreach (var row in rows)
        {
            text.Append("  ");
            text.AppendLine(string.Join("  ", row.Select((cell, c) => leftColumns.Contains(c) ? cell.PadRight(widths[c]) : cell.PadLeft(widths[c]))).TrimEnd());
        }
    }
}
