using System.Globalization;
using Spectre.Console;

namespace LoadTests.Harness;

/// <summary>One scenario's state at a progress tick.</summary>
public sealed record ProgressRow(string Scenario, TimeSpan Elapsed, TimeSpan Total, string Load, double Rps, double P99Ms, long Ok, long Fail);

/// <summary>
/// Shows progress while scenarios run: a live table on a terminal, one plain line per scenario per interval when the
/// output is a file or a pipe (CI logs cannot take cursor movement).
/// </summary>
public abstract class Progress
{
    private readonly Dictionary<string, (long Count, long At)> previous = new(StringComparer.Ordinal);

    public static Progress For(TextWriter output, TimeSpan interval) =>
        ReferenceEquals(output, Console.Out) && !Console.IsOutputRedirected && AnsiConsole.Profile.Capabilities.Interactive
            ? new LiveProgress(interval)
            : new PlainProgress(output, interval);

    /// <summary>Updates the display until <paramref name="done"/> completes.</summary>
    public abstract Task RunAsync(IReadOnlyList<ScenarioRunner> runners, Task done);

    /// <summary>
    /// The rows for this tick. RPS is over the last interval, not the whole run, so a stall shows while it happens;
    /// p99 is over everything recorded so far.
    /// </summary>
    protected IReadOnlyList<ProgressRow> Rows(IReadOnlyList<ScenarioRunner> runners)
    {
        var now = System.Diagnostics.Stopwatch.GetTimestamp();
        var rows = new List<ProgressRow>();
        foreach (var runner in runners)
        {
            var global = runner.Snapshot().FirstOrDefault(s => s.Step == "global");
            var count = (global?.Ok ?? 0) + (global?.Fail ?? 0);
            var rps = previous.TryGetValue(runner.Name, out var last) && now > last.At
                ? (count - last.Count) / System.Diagnostics.Stopwatch.GetElapsedTime(last.At, now).TotalSeconds
                : global?.Rps ?? 0;
            previous[runner.Name] = (count, now);
            var load = runner.CurrentRate > 0
                ? string.Create(CultureInfo.InvariantCulture, $"{runner.CurrentRate:0}/s ({runner.CurrentLoad} in flight)")
                : string.Create(CultureInfo.InvariantCulture, $"{runner.CurrentLoad} copies");
            rows.Add(new ProgressRow(runner.Name, runner.Elapsed, runner.TotalDuration, load, rps, global?.P99Ms ?? 0, global?.Ok ?? 0, global?.Fail ?? 0));
        }

        return rows;
    }

    private sealed class PlainProgress(TextWriter output, TimeSpan interval) : Progress
    {
        public override async Task RunAsync(IReadOnlyList<ScenarioRunner> runners, Task done)
        {
            while (!done.IsCompleted)
            {
                await Task.WhenAny(done, Task.Delay(interval, CancellationToken.None));
                foreach (var row in Rows(runners))
                {
                    await output.WriteLineAsync(string.Create(
                        CultureInfo.InvariantCulture,
                        $"[{row.Scenario}] {row.Elapsed:mm\\:ss}/{row.Total:mm\\:ss} load={row.Load} rps={row.Rps:0} p99={row.P99Ms:0.0}ms ok={row.Ok} fail={row.Fail}"));
                }
            }
        }
    }

    private sealed class LiveProgress(TimeSpan interval) : Progress
    {
        public override async Task RunAsync(IReadOnlyList<ScenarioRunner> runners, Task done)
        {
            var table = new Table().Border(TableBorder.Rounded).Title("load");
            foreach (var column in new[] { "scenario", "elapsed", "load", "rps", "p99 ms", "ok", "fail" })
            {
                table.AddColumn(column == "scenario" ? new TableColumn(column) : new TableColumn(column).RightAligned());
            }

            await AnsiConsole.Live(table).AutoClear(false).StartAsync(async live =>
            {
                while (!done.IsCompleted)
                {
                    await Task.WhenAny(done, Task.Delay(interval, CancellationToken.None));
                    table.Rows.Clear();
                    foreach (var row in Rows(runners))
                    {
                        table.AddRow(
                            Markup.Escape(row.Scenario),
                            string.Create(CultureInfo.InvariantCulture, $"{row.Elapsed:mm\\:ss}/{row.Total:mm\\:ss}"),
                            Markup.Escape(row.Load),
                            row.Rps.ToString("0", CultureInfo.InvariantCulture),
                            row.P99Ms.ToString("0.0", CultureInfo.InvariantCulture),
                            row.Ok.ToString(CultureInfo.InvariantCulture),
                            row.Fail == 0 ? "0" : $"[red]{row.Fail}[/]");
                    }

                    live.Refresh();
                }
            });
        }
    }
}
