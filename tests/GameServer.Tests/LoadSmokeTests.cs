using GameServer.Tests.Infrastructure;

namespace GameServer.Tests;

/// <summary>The load suite's short smoke run: its own server, a few dozen players, churn and every chaos mode.</summary>
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

        // Every chaos mode ran at least once, and every close reason matched what the victims' modes predict.
        foreach (var mode in new[] { "abort", "close-with-unread", "fin", "half-close", "silent", "exit-without-close", "sigkill", "goodbye" })
        {
            Assert.Matches($@"\| chaos \| global \|.*{mode}: [1-9]", load.Output);
        }

        foreach (var reason in new[] { "peer_reset", "peer_closed", "heartbeat_timeout", "client_goodbye" })
        {
            Assert.Matches($@"\| {reason} \| ([1-9]\d*) \| \1 \|", load.Output);
        }
        var folder = Assert.Single(Directory.GetDirectories(reports));
        Assert.True(File.Exists(Path.Combine(folder, "report.md")));
        Assert.True(File.Exists(Path.Combine(folder, "report.csv")));
        Assert.Contains("verdict: PASSED", File.ReadAllText(Path.Combine(folder, "report.txt")), StringComparison.Ordinal);
        Assert.Contains("\"verdict\": \"passed\"", File.ReadAllText(Path.Combine(folder, "report.json")), StringComparison.Ordinal);
        var html = File.ReadAllText(Path.Combine(folder, "report.html"));
        Assert.Contains("<polyline", html, StringComparison.Ordinal); // the charts are there, inline
        Assert.DoesNotContain("http", html, StringComparison.Ordinal); // and nothing is fetched from elsewhere
        Directory.Delete(reports, recursive: true);
    }

    [Fact]
    public async Task UnreachableMetrics_StopTheSuiteBeforeAnyLoad_WithOneLineAndExitCode2()
    {
        // A port nobody listens on: taken, then given back.
        var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        var port = ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        var reports = Path.Combine(Path.GetTempPath(), $"load-unreachable-{Guid.NewGuid():N}");

        using var load = BotProcess.StartIn(
            null, BotProcess.BuiltDll("LoadTests", "LoadTests.dll"), "--server", $"127.0.0.1:{port}", "--metrics", $"http://127.0.0.1:{port}/metrics", "--report-folder", reports);
        var exit = await load.WaitExitAsync(TimeSpan.FromMinutes(1));

        Assert.Equal(2, exit);
        Assert.Contains($"load: cannot read --metrics http://127.0.0.1:{port}/metrics: ", load.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", load.Output, StringComparison.Ordinal); // no stack trace
        Assert.DoesNotContain("Unhandled exception", load.Output, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--copies", "-1", "--copies must not be negative")]
    [InlineData("--target", "nowhere", "--server must be host:port, not 'nowhere'")]
    [InlineData("--client-transport", "udp", "--client-transport must be auto, sockets or epoll, not 'udp'")]
    [InlineData("--frobnicate", "1", "unknown option --frobnicate (see --help)")]
    [InlineData("--scenario", "play,nope", "--scenario: unknown scenario 'nope' (scenarios: play, churn, chaos, resume, kill)")]
    public async Task BadOption_StopsTheSuiteAtOnce_WithOneLineNamingIt(string option, string value, string expected)
    {
        using var load = BotProcess.StartIn(null, BotProcess.BuiltDll("LoadTests", "LoadTests.dll"), option, value);
        var exit = await load.WaitExitAsync(TimeSpan.FromMinutes(1));

        Assert.Equal(2, exit);
        Assert.Contains($"load: {expected}", load.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", load.Output, StringComparison.Ordinal); // no stack trace
    }
}
