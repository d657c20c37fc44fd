using GameServer.Tests.Infrastructure;

namespace GameServer.Tests;

/// <summary>The load suite's short smoke run: its own server, a few dozen players and churn, thresholds and reports.</summary>
public class LoadSmokeTests
{
    [Fact]
    public async Task SmokeRun_HoldsItsThresholds_LeaksNoConnection_AndWritesReports()
    {
        var reports = Path.Combine(Path.GetTempPath(), $"load-smoke-{Guid.NewGuid():N}");
        using var load = BotProcess.StartIn(null, BotProcess.BuiltDll("LoadTests", "LoadTests.dll"), "--smoke", "--report-folder", reports);
        var exit = await load.WaitExitAsync(TimeSpan.FromMinutes(3));

        Assert.True(exit == 0, load.Output);
        Assert.Contains("load: all thresholds held", load.Output, StringComparison.Ordinal);
        Assert.Contains("server active connections: baseline 0, after the run 0", load.Output, StringComparison.Ordinal);
        Assert.Matches(@"\| play \| echo \| [1-9]\d* \| 0 \|", load.Output);
        Assert.Matches(@"\| churn \| global \| [1-9]\d* \| 0 \|", load.Output);
        var folder = Assert.Single(Directory.GetDirectories(reports));
        Assert.True(File.Exists(Path.Combine(folder, "report.md")));
        Assert.True(File.Exists(Path.Combine(folder, "report.csv")));
        var html = File.ReadAllText(Path.Combine(folder, "report.html"));
        Assert.Contains("<polyline", html, StringComparison.Ordinal); // the charts are there, inline
        Assert.DoesNotContain("http", html, StringComparison.Ordinal); // and nothing is fetched from elsewhere
        Directory.Delete(reports, recursive: true);
    }
}
