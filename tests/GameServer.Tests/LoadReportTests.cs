using System.Text.Json;
using System.Text.RegularExpressions;
using GameServer.Tests.Infrastructure;
using LoadTests.Harness;
using Microsoft.Extensions.Logging.Abstractions;

namespace GameServer.Tests;

/// <summary>The load suite's reports: every format written from one run, the JSON readable by a program, the HTML's charts.</summary>
[Collection(LoadHarnessWarmUp.Collection)]
public sealed class LoadReportTests : IDisposable
{
    private readonly TempFolder temp = new("reports");

    private string folder => temp.Path;

    public void Dispose() => temp.Dispose();

    [Fact]
    public async Task ARun_WritesEveryReport_AndItsJsonCarriesStatsThresholdsCloseReasonsAndVerdict()
    {
        var scenario = Scenario.Create("s", async context =>
            {
                await Step.Run("work", context, async () =>
                {
                    await Task.Delay(10, context.ScenarioCancellationToken);
                    return Response.Ok(statusCode: "done", sizeBytes: 7);
                });
                return Response.Ok();
            })
            .WithoutWarmUp()
            .WithLoadSimulations(new LoadSimulation.KeepConstant(2, TimeSpan.FromSeconds(1)))
            .WithThresholds(Threshold.Create("work", s => s.P99Ms <= 5_000, description: "work p99 at most 5000 ms"));

        var result = await LoadRunner.RegisterScenarios(scenario)
            .WithReportFolder(folder)
            .WithGeneratorLagBound(10_000)
            .WithAfterRun(_ => Task.FromResult(new AfterRun(
                [new CloseReasonRow("peer_reset", 3, 3), new CloseReasonRow("heartbeat_timeout", 2, 1)],
                [new CheckRow("sessions resumed", "4", "4", true)],
                ["close reason heartbeat_timeout: expected 2, the server reports 1"])))
            .RunAsync(NullLogger.Instance, TextWriter.Null, CancellationToken.None)
            .WaitAsync(TimeSpan.FromMinutes(2));

        Assert.StartsWith(folder, result.ReportFolder, StringComparison.Ordinal);
        foreach (var report in new[] { "report.md", "report.txt", "report.json", "report.csv", "report.html" })
        {
            Assert.True(File.Exists(Path.Combine(result.ReportFolder, report)), $"{report} is missing");
        }

        var work = result.Stats.Single(s => s.Step == "work");
        Assert.Equal(0, work.Fail); // a step cut short by its copy being stopped is not a failure
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(result.ReportFolder, "report.json")));
        var root = json.RootElement;
        Assert.Equal("failed", root.GetProperty("verdict").GetString());
        Assert.Equal("close reason heartbeat_timeout: expected 2, the server reports 1", root.GetProperty("problems")[0].GetString());
        var s = Assert.Single(root.GetProperty("scenarios").EnumerateArray());
        Assert.Equal("s", s.GetProperty("name").GetString());
        var step = s.GetProperty("steps").EnumerateArray().Single(e => e.GetProperty("name").GetString() == "work");
        Assert.Equal(work.Ok, step.GetProperty("ok").GetInt64());
        Assert.Equal(work.P99Ms, step.GetProperty("latencyMs").GetProperty("p99").GetDouble());
        Assert.True(step.GetProperty("latencyMs").GetProperty("p50").GetDouble() >= 8); // Task.Delay(10): timers may complete ~1 ms early
        Assert.Equal(work.Ok, step.GetProperty("statusCodes").GetProperty("done").GetInt64());
        Assert.Equal(7 * work.Ok, step.GetProperty("bytes").GetInt64());
        var threshold = Assert.Single(s.GetProperty("thresholds").EnumerateArray());
        Assert.Equal("work p99 at most 5000 ms", threshold.GetProperty("description").GetString());
        Assert.True(threshold.GetProperty("passed").GetBoolean());
        var reasons = root.GetProperty("closeReasons").EnumerateArray().ToList();
        Assert.Equal(["peer_reset", "heartbeat_timeout"], reasons.Select(r => r.GetProperty("reason").GetString()));
        Assert.Equal(2, reasons[1].GetProperty("expected").GetDouble());
        Assert.Equal(1, reasons[1].GetProperty("observed").GetDouble());
        Assert.False(reasons[1].GetProperty("matches").GetBoolean());
        Assert.Equal("sessions resumed", root.GetProperty("checks")[0].GetProperty("name").GetString());
        Assert.True(root.GetProperty("timelines").GetArrayLength() >= 2);

        var text = File.ReadAllText(Path.Combine(result.ReportFolder, "report.txt"));
        Assert.Contains("verdict: FAILED", text, StringComparison.Ordinal);
        Assert.Matches(@"heartbeat_timeout\s+2\s+1\s+MISMATCH", text);
        Assert.True(Regex.IsMatch(text, $@"\n  s\s+work\s+{work.Ok}\s+0\s"), text);
        Assert.Contains("work p99 at most 5000 ms", text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AThresholdWhosePredicateThrows_IsABrokenCheckWithItsMessage_AndEveryReportIsStillWritten()
    {
        var scenario = Quick("throws").WithThresholds(Threshold.Create(s => s.Ok / (s.Fail - s.Fail) > 0, description: "divides by zero"));

        var result = await RunAsync(scenario);

        var threshold = Assert.Single(result.Thresholds);
        Assert.False(threshold.HeldAtEnd);
        Assert.True(threshold.FailedChecks >= 1);
        Assert.Equal("DivideByZeroException: Attempted to divide by zero.", threshold.ExceptionMessage);
        Assert.Equal(["throws/global: divides by zero (its predicate threw: DivideByZeroException: Attempted to divide by zero.)"], result.BrokenThresholds);
        AssertEveryReport(result, "DivideByZeroException");
    }

    [Fact]
    public async Task AfterRunChecksThatThrow_FailTheRunSayingSo_AndEveryReportIsStillWritten()
    {
        var result = await LoadRunner.RegisterScenarios(Quick("after"))
            .WithReportFolder(folder)
            .WithGeneratorLagBound(10_000)
            .WithAfterRun(_ => throw new HttpRequestException("Connection refused (h:9464)"))
            .RunAsync(NullLogger.Instance, TextWriter.Null, CancellationToken.None)
            .WaitAsync(TimeSpan.FromMinutes(2));

        Assert.Equal(["after-run checks failed: HttpRequestException: Connection refused (h:9464)"], result.BrokenThresholds);
        Assert.True(result.Stats.Single(s => s.Step == "global").Ok > 0); // what was measured is kept
        AssertEveryReport(result, "after-run checks failed");
    }

    [Fact]
    public async Task ACleanStepThatThrows_IsAProblemOfTheRun_AndEveryReportIsStillWritten()
    {
        var result = await RunAsync(Quick("cleaning").WithClean(_ => throw new InvalidOperationException("the pool was gone")));

        Assert.Equal(["cleaning: its clean step failed (InvalidOperationException: the pool was gone)"], result.BrokenThresholds);
        AssertEveryReport(result, "its clean step failed");
    }

    [Fact]
    public async Task AThresholdOfAScenarioThatRecordedNothing_IsInTheJson_AndEveryReportWarnsItJudgedNothing()
    {
        var idle = Scenario.Create("idle", _ => Task.FromResult(Response.Ok()))
            .WithoutWarmUp()
            .WithLoadSimulations(new LoadSimulation.KeepConstant(0, TimeSpan.FromSeconds(0.3)))
            .WithThresholds(Threshold.Create("connect", s => s.P99Ms <= 1000, description: "connect p99 at most 1000 ms"));
        var console = new StringWriter();

        var result = await LoadRunner.RegisterScenarios(Quick("busy"), idle)
            .WithReportFolder(folder)
            .WithGeneratorLagBound(10_000)
            .RunAsync(NullLogger.Instance, console, CancellationToken.None)
            .WaitAsync(TimeSpan.FromMinutes(2));

        Assert.True(result.Passed, string.Join("; ", result.BrokenThresholds)); // no data is said, not failed
        var warning = Assert.Single(result.Warnings);
        Assert.StartsWith("idle/connect: connect p99 at most 1000 ms: no data:", warning, StringComparison.Ordinal);
        Assert.Contains("no data", console.ToString(), StringComparison.Ordinal);
        AssertEveryReport(result, "idle/connect: connect p99 at most 1000 ms: no data");
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(result.ReportFolder, "report.json")));
        var scenario = json.RootElement.GetProperty("scenarios").EnumerateArray().Single(e => e.GetProperty("name").GetString() == "idle");
        Assert.Empty(scenario.GetProperty("steps").EnumerateArray());
        var threshold = Assert.Single(scenario.GetProperty("thresholds").EnumerateArray());
        Assert.Equal("connect p99 at most 1000 ms", threshold.GetProperty("description").GetString());
        Assert.True(threshold.GetProperty("noData").GetBoolean());
    }

    [Fact]
    public async Task RunsStartedInTheSameSecond_WriteTheirReportsToFoldersOfTheirOwn()
    {
        var first = RunAsync(Quick("one"));
        var second = RunAsync(Quick("two"));

        var results = await Task.WhenAll(first, second);

        Assert.NotEqual(results[0].ReportFolder, results[1].ReportFolder);
        Assert.Contains($"-{Environment.ProcessId}", Path.GetFileName(results[0].ReportFolder), StringComparison.Ordinal);
        Assert.Contains("\"name\": \"one\"", File.ReadAllText(Path.Combine(results[0].ReportFolder, "report.json")), StringComparison.Ordinal);
        Assert.Contains("\"name\": \"two\"", File.ReadAllText(Path.Combine(results[1].ReportFolder, "report.json")), StringComparison.Ordinal);
    }

    [Fact]
    public void Html_CloseReasonBars_NeverHaveANegativeWidth()
    {
        var result = new RunResult([], ["close reason peer_reset: expected 2, the server reports -3"], folder, new GeneratorLoad(0, 1, 2, 30, 2))
        {
            CloseReasons = [new CloseReasonRow("peer_reset", 2, -3)],
        };

        var html = HtmlReport.Render(result);

        Assert.DoesNotMatch("width=\"-", html);
    }

    /// <summary>One copy, an invocation every 10 ms, for 0.3 s.</summary>
    private static ScenarioProps Quick(string name) =>
        Scenario.Create(name, async context =>
            {
                await Task.Delay(10, context.ScenarioCancellationToken);
                return Response.Ok();
            })
            .WithoutWarmUp()
            .WithLoadSimulations(new LoadSimulation.KeepConstant(1, TimeSpan.FromSeconds(0.3)));

    private async Task<RunResult> RunAsync(ScenarioProps scenario) =>
        await LoadRunner.RegisterScenarios(scenario)
            .WithReportFolder(folder)
            .WithGeneratorLagBound(10_000)
            .RunAsync(NullLogger.Instance, TextWriter.Null, CancellationToken.None)
            .WaitAsync(TimeSpan.FromMinutes(2));

    /// <summary>All five reports exist, and every one but the CSV (steps only) says <paramref name="text"/>.</summary>
    private static void AssertEveryReport(RunResult result, string text)
    {
        foreach (var report in new[] { "report.md", "report.txt", "report.json", "report.html" })
        {
            var path = Path.Combine(result.ReportFolder, report);
            Assert.True(File.Exists(path), $"{report} is missing");
            Assert.Contains(report == "report.html" ? System.Net.WebUtility.HtmlEncode(text) : text, File.ReadAllText(path), StringComparison.Ordinal);
        }

        Assert.True(File.Exists(Path.Combine(result.ReportFolder, "report.csv")));
    }

    [Fact]
    public void Html_HasAxesWithTickLabels_GridLegendsPercentilesOverTime_AndACloseReasonChart()
    {
        var snapshot = new StepSnapshot("play", "echo", 100, 0, 10, 1, 2, 9, 1, 2, 3, 4, 5, 6, 0, new Dictionary<string, long> { ["ok"] = 100 });
        var points = Enumerable.Range(0, 10)
            .Select(i => new TimelinePoint(3 + i, 10, i == 5 ? 1 : 0, i == 4 ? double.NaN : 2, 3, 4 + i)) // second 7 timed nothing
            .ToList();
        var result = new RunResult([snapshot], ["close reason heartbeat_timeout: expected 2, the server reports 1"], folder, new GeneratorLoad(0, 1, 2, 30, 2))
        {
            Timelines = [new StepTimeline("play", "echo", points)],
            CloseReasons = [new CloseReasonRow("peer_reset", 30, 30), new CloseReasonRow("heartbeat_timeout", 2, 1)],
        };

        var html = HtmlReport.Render(result);

        Assert.DoesNotContain("http", html, StringComparison.Ordinal); // nothing fetched from elsewhere
        Assert.DoesNotContain("<script", html, StringComparison.Ordinal);
        Assert.Equal(2, Regex.Count(html, "seconds since start"));
        var overTime = html[html.IndexOf("<h2>Over time", StringComparison.Ordinal)..];
        var xAxis = Regex.Matches(overTime, "<g class=\"x-axis\"[^>]*>(.*?)</g>").Select(m => m.Groups[1].Value).First();
        Assert.Equal(["0", "2", "4", "6", "8", "10", "12"], Regex.Matches(xAxis, ">([^<]+)</text>").Select(m => m.Groups[1].Value));
        var yAxis = Regex.Matches(overTime, "<g class=\"y-axis\"[^>]*>(.*?)</g>").Select(m => m.Groups[1].Value).First();
        Assert.Equal(["0", "2", "4", "6", "8", "10"], Regex.Matches(yAxis, ">([^<]+)</text>").Select(m => m.Groups[1].Value));
        Assert.Contains("<g class=\"grid\"", html, StringComparison.Ordinal);
        var legends = Regex.Matches(html, "<g class=\"legend\"[^>]*>(.*?)</g>").SelectMany(m => Regex.Matches(m.Groups[1].Value, ">([^<]+)</text>")).Select(m => m.Groups[1].Value).ToList();
        Assert.Equal(["expected", "observed, matches", "observed, mismatch", "ok", "fail", "p50", "p95", "p99"], legends); // close reasons come first on the page
        foreach (var series in new[] { "ok", "fail", "p50", "p95", "p99" })
        {
            Assert.Contains($"data-series=\"{series}\"", html, StringComparison.Ordinal);
        }

        Assert.Equal(2, Regex.Count(html, "data-series=\"p50\"")); // the second without a latency breaks the line, not a drop to 0
        Assert.Equal(1, Regex.Count(html, "data-series=\"p99\""));
        var closeReasonTicks = Regex.Matches(html[..html.IndexOf("<h2>Over time", StringComparison.Ordinal)], "<g class=\"x-axis\"[^>]*>(.*?)</g>").Single().Groups[1].Value;
        Assert.Equal(["0", "10", "20", "30"], Regex.Matches(closeReasonTicks, ">([^<]+)</text>").Select(m => m.Groups[1].Value));
        Assert.Contains("class=\"chart close-reasons\"", html, StringComparison.Ordinal);
        Assert.Matches("<rect class=\"expected\" data-reason=\"heartbeat_timeout\"[^>]*fill=\"#8a8f98\"", html);
        Assert.Matches("<rect class=\"observed\" data-reason=\"heartbeat_timeout\"[^>]*fill=\"#d1352b\"", html); // a mismatch in red
        Assert.Matches("<rect class=\"observed\" data-reason=\"peer_reset\"[^>]*fill=\"#1b9e5a\"", html);
        Assert.Matches(@"<td class=""l"">heartbeat_timeout</td><td>2</td><td>1</td><td class=""l bad"">MISMATCH</td>", html);
        Assert.Contains("FAILED", html, StringComparison.Ordinal);

        using var json = JsonDocument.Parse(ReportWriter.JsonText(result)); // NaN is not JSON: a second without a latency is null
        var seventh = json.RootElement.GetProperty("timelines")[0].GetProperty("seconds")[4];
        Assert.Equal(7, seventh.GetProperty("second").GetDouble());
        Assert.Equal(JsonValueKind.Null, seventh.GetProperty("p50Ms").ValueKind);
    }
}
