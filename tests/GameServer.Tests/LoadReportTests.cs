using System.Text.Json;
using System.Text.RegularExpressions;
using LoadTests.Harness;
using Microsoft.Extensions.Logging.Abstractions;

namespace GameServer.Tests;

/// <summary>The load suite's reports: every format written from one run, the JSON readable by a program, the HTML's charts.</summary>
public sealed class LoadReportTests : IDisposable
{
    private readonly string folder = Path.Combine(Path.GetTempPath(), $"reports-{Guid.NewGuid():N}");

    public void Dispose()
    {
        if (Directory.Exists(folder))
        {
            Directory.Delete(folder, recursive: true);
        }
    }

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
        Assert.True(step.GetProperty("latencyMs").GetProperty("p50").GetDouble() >= 10);
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
