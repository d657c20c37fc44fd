using System.Diagnostics;
using System.Net.Http;
using System.Net.Sockets;
using System.Text.Json;
using System.Text.RegularExpressions;
using GameClient;
using GameProtocol;
using GameServer.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using Xunit.Abstractions;

namespace GameServer.Tests;

/// <summary>
/// What ops/ gives an operator works against the real tools and the real server: Debian's Prometheus scrapes a server
/// with the shipped configuration and reads every close reason back, the alert rules pass their promtool unit tests,
/// every metric the alerts and the dashboard name is one the server exports, and the systemd unit's settings are ones
/// the server accepts. ./run.sh test installs Prometheus (Debian package <c>prometheus</c>, with promtool).
/// </summary>
public partial class OpsFolderTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task PromtoolAcceptsTheConfig_AndTheAlertRulesPassTheirUnitTests()
    {
        var folder = Repo.Path("ops", "prometheus");
        var config = await RunAsync("promtool", folder, null, "check", "config", "prometheus.yml");
        Assert.True(config.ExitCode == 0, config.Output);
        Assert.Contains("SUCCESS: 6 rules found", config.Output, StringComparison.Ordinal);

        var rules = await RunAsync("promtool", folder, null, "test", "rules", "gameserver.rules.test.yml");
        Assert.True(rules.ExitCode == 0, rules.Output);
        Assert.Contains("SUCCESS", rules.Output, StringComparison.Ordinal);
    }

    [Fact]
    public void TheAbnormalClosesAlert_NamesEveryAbnormalReason_ButTheTwoLeftOutOnPurpose()
    {
        // A reason added later as abnormal must be added to the alert, or be left out here with its reason.
        var rules = File.ReadAllText(Repo.Path("ops", "prometheus", "gameserver.rules.yml"));
        var alerted = AbnormalReasonsInTheAlert().Match(rules).Groups[1].Value.Split('|').Order(StringComparer.Ordinal);
        var abnormal = TcpConnections.CloseReason.Core.Concat(GameProtocol.Pipeline.GameCloseReasons.All)
            .Where(r => r.Kind == TcpConnections.CloseKind.Abnormal)
            .Select(r => r.Name)
            .Except(["server_full", "resume_expired"]) // the connection-cap alert; a player who did not come back
            .Order(StringComparer.Ordinal);
        Assert.Equal(abnormal, alerted);
    }

    [Fact]
    public async Task RealPrometheus_ScrapesTheServer_WithTheShippedConfig_AndReadsEachCloseReasonBack()
    {
        var metricsPort = TestServer.FreePort();
        await using var server = await TestServer.StartAsync($"--Metrics:Port={metricsPort}");
        using var prometheus = await PrometheusProcess.StartAsync(metricsPort);
        using var http = new HttpClient();

        // Three ways to leave: a Goodbye, a reset after the Welcome, and bytes that are no frame.
        await using (var client = await GameConnection.ConnectAsync(server.ClientOptions("scraped")))
        {
            await client.GoodbyeAsync();
        }

        using (var wire = await Wire.ConnectAsync(server.EndPoint))
        {
            await wire.SendAsync(new Hello(1, "reset", null));
            Assert.IsType<Welcome>(await wire.ReceiveAsync());
            wire.Socket.LingerState = new LingerOption(true, 0);
        }

        using (var wire = await Wire.ConnectAsync(server.EndPoint))
        {
            await wire.SendRawAsync([0xFF, 0xFF, 0xFF, 0xFF, 1]);
            await wire.ReceiveUntilEndAsync();
        }

        await server.AssertAllClosedAsync();
        var expected = new Dictionary<string, string> { ["client_goodbye"] = "1", ["peer_reset"] = "1", ["protocol_error"] = "1" };
        Dictionary<string, string> seen = [];
        var deadline = DateTime.UtcNow + Patience;
        while (!expected.All(e => seen.TryGetValue(e.Key, out var v) && v == e.Value))
        {
            Assert.True(DateTime.UtcNow < deadline, $"Prometheus read back {string.Join(", ", seen)}; {prometheus.Log}");
            await Task.Delay(250);
            try
            {
                seen = await QueryByReasonAsync(http, prometheus.Api, "gameserver_connections_closed_total{job=\"gameserver\"}");
            }
            catch (HttpRequestException)
            {
                // Prometheus is still starting.
            }
        }

        Assert.Equal("1", (await QueryAsync(http, prometheus.Api, "up{job=\"gameserver\"}")).Single().Value);

        // The alert rules load and evaluate against the real series without an error.
        await EventuallyAsync(async () =>
        {
            using var rules = JsonDocument.Parse(await http.GetStringAsync(new Uri(prometheus.Api, "rules")));
            var all = rules.RootElement.GetProperty("data").GetProperty("groups").EnumerateArray()
                .SelectMany(g => g.GetProperty("rules").EnumerateArray()).ToList();
            Assert.Equal(6, all.Count);
            return all.All(r => r.GetProperty("health").GetString() == "ok");
        });
    }

    [Fact]
    public async Task PromtoolCheckMetrics_FindsNothingWrongWithTheGamesOwnMetrics()
    {
        var metricsPort = TestServer.FreePort();
        await using var server = await TestServer.StartAsync($"--Metrics:Port={metricsPort}", "--Heartbeat:IntervalMs=300");
        await PlayASessionWithHeartbeatsAsync(server);
        using var http = new HttpClient();
        var text = await http.GetStringAsync(new Uri($"http://127.0.0.1:{metricsPort}/metrics"));

        var whole = await RunAsync("promtool", Repo.Root, text, "check", "metrics");
        Assert.NotEqual(1, whole.ExitCode); // 1: the text does not parse; 3: lint remarks, listed below

        // The runtime's meter names are .NET's (dotnet_assembly_count is a gauge, not a histogram's count); the
        // game's own must pass clean.
        Assert.All(Lines(whole.Output), l => Assert.StartsWith("dotnet_", l, StringComparison.Ordinal));
        var games = await RunAsync("promtool", Repo.Root, OnlyFamilies(text, "gameserver_"), "check", "metrics");
        Assert.True(games.ExitCode == 0, games.Output);
    }

    [Fact]
    public async Task EveryMetricTheAlertsAndTheDashboardName_IsOneTheServerExports()
    {
        var metricsPort = TestServer.FreePort();
        await using var server = await TestServer.StartAsync($"--Metrics:Port={metricsPort}", "--Heartbeat:IntervalMs=300");
        await PlayASessionWithHeartbeatsAsync(server);
        GC.Collect();
        using var http = new HttpClient();
        var exported = SampleName().Matches(await http.GetStringAsync(new Uri($"http://127.0.0.1:{metricsPort}/metrics")))
            .Select(m => m.Groups[1].Value).ToHashSet();

        var named = new[] { Repo.Path("ops", "prometheus", "gameserver.rules.yml"), Repo.Path("ops", "grafana", "gameserver-dashboard.json") }
            .SelectMany(f => MetricReference().Matches(File.ReadAllText(f)).Select(m => (File: System.IO.Path.GetFileName(f), Name: m.Value)))
            .ToList();

        Assert.Contains(named, n => n.Name == "gameserver_connections_closed_total");
        Assert.Contains(named, n => n.Name == "gameserver_heartbeat_rtt_seconds_bucket");
        var unknown = named.Where(n => !exported.Contains(n.Name)).Distinct().ToList();
        Assert.True(unknown.Count == 0, "not exported: " + string.Join(", ", unknown));
    }

    [Fact]
    public async Task TheSystemdUnitsSettings_AreOnesTheServerAccepts_AndItWaitsLongerThanTheServersStop()
    {
        var unit = await File.ReadAllLinesAsync(Repo.Path("ops", "systemd", "gameserver.service"));
        var settings = unit.Where(l => l.StartsWith("Environment=GAMESERVER_", StringComparison.Ordinal))
            .Select(l => l["Environment=GAMESERVER_".Length..].Split('=', 2))
            .ToDictionary(kv => kv[0].Replace("__", ":", StringComparison.Ordinal), kv => kv[1]);
        Assert.Equal("json", settings["Logging:Format"]);
        Assert.Equal("127.0.0.1", settings["Metrics:Address"]); // never the players' network unless the operator says so

        // Every key binds (an unknown one fails the start) and every value validates; the ports are the test's own.
        var port = TestServer.FreePort();
        TimeSpan hostStop;
        await using (var server = await TestServer.StartAsync([.. settings.Select(kv => $"--{kv.Key}={kv.Value}"), $"--Metrics:Port={port}"]))
        {
            hostStop = server.Services.GetRequiredService<IOptions<HostOptions>>().Value.ShutdownTimeout;
        }

        // systemd must not SIGKILL a server still saying Goodbye: it waits longer than the host's whole stop, even
        // with Server:ShutdownTimeoutMs raised to a minute.
        var stopSeconds = int.Parse(unit.Single(l => l.StartsWith("TimeoutStopSec=", StringComparison.Ordinal))["TimeoutStopSec=".Length..], System.Globalization.CultureInfo.InvariantCulture);
        Assert.Equal(TimeSpan.FromSeconds(10) + GameServer.Hosting.GameServerApp.ShutdownAfterDrain, hostStop);
        Assert.True(stopSeconds > (TimeSpan.FromSeconds(60) + GameServer.Hosting.GameServerApp.ShutdownAfterDrain).TotalSeconds, $"TimeoutStopSec={stopSeconds}");
        Assert.Contains("RestartPreventExitStatus=2", unit);
        Assert.Contains("ExecStart=/usr/bin/dotnet /opt/gameserver/GameServer.dll", unit);
    }

    private static async Task PlayASessionWithHeartbeatsAsync(TestServer server)
    {
        await using var client = await GameConnection.ConnectAsync(server.ClientOptions("ops"));
        await client.SendAsync(new JoinRoom("ops"));
        await server.WaitForLogAsync(e => e.EventId.Id == 3002);
        var watch = Stopwatch.StartNew();
        while (server.Registry.Snapshot().All(c => c.FramesReceived < 4) && watch.Elapsed < Patience)
        {
            await Task.Delay(50); // Hello, JoinRoom and two Pongs: round trips were measured
        }

        await client.GoodbyeAsync();
        await server.AssertAllClosedAsync();
    }

    private static async Task<Dictionary<string, string>> QueryByReasonAsync(HttpClient http, Uri api, string query) =>
        (await QueryAsync(http, api, query)).ToDictionary(r => r.Labels.GetValueOrDefault("reason", "?"), r => r.Value);

    private static async Task<List<(Dictionary<string, string> Labels, string Value)>> QueryAsync(HttpClient http, Uri api, string query)
    {
        using var json = JsonDocument.Parse(await http.GetStringAsync(new Uri(api, "query?query=" + Uri.EscapeDataString(query))));
        Assert.Equal("success", json.RootElement.GetProperty("status").GetString());
        return json.RootElement.GetProperty("data").GetProperty("result").EnumerateArray()
            .Select(r => (
                r.GetProperty("metric").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString() ?? string.Empty),
                r.GetProperty("value")[1].GetString() ?? string.Empty))
            .ToList();
    }

    private static async Task EventuallyAsync(Func<Task<bool>> condition)
    {
        var deadline = DateTime.UtcNow + Patience;
        while (!await condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "the condition did not hold in time");
            await Task.Delay(250);
        }
    }

    private static string[] Lines(string text) => text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    /// <summary>The families whose names start with <paramref name="prefix"/>, with their HELP and TYPE lines.</summary>
    private static string OnlyFamilies(string text, string prefix) => string.Join('\n', Lines(text).Where(l =>
        l.StartsWith(prefix, StringComparison.Ordinal)
        || l.StartsWith("# HELP " + prefix, StringComparison.Ordinal)
        || l.StartsWith("# TYPE " + prefix, StringComparison.Ordinal)
        || l.StartsWith("# UNIT " + prefix, StringComparison.Ordinal))) + "\n";

    private async Task<(int ExitCode, string Output)> RunAsync(string tool, string directory, string? input, params string[] args)
    {
        using (var process = ToolProcess.StartProcess(tool, "prometheus", directory, redirectInput: true, args))
        {
            if (input is not null)
            {
                await process.StandardInput.WriteAsync(input);
            }

            process.StandardInput.Close();
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEndAsync();
            try
            {
                await process.WaitForExitAsync().WaitAsync(Patience);
            }
            catch (TimeoutException)
            {
                process.Kill(entireProcessTree: true);
                throw;
            }

            var text = await stdout + await stderr;
            output.WriteLine($"{tool} {string.Join(' ', args)}: exit {process.ExitCode}\n{text}");
            return (process.ExitCode, text);
        }
    }

    [GeneratedRegex("reason=~\"([a-z_|]+)\"")]
    private static partial Regex AbnormalReasonsInTheAlert();

    [GeneratedRegex(@"(?m)^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]")]
    private static partial Regex SampleName();

    [GeneratedRegex(@"\b(?:gameserver|dotnet)_[a-z0-9_]+\b")]
    private static partial Regex MetricReference();

    /// <summary>Debian's Prometheus on a loopback port with the shipped configuration, pointed at the test's server.</summary>
    private sealed class PrometheusProcess : IDisposable
    {
        private readonly ToolProcess process;
        private readonly string folder;

        private PrometheusProcess(ToolProcess process, string folder, Uri api)
        {
            this.process = process;
            this.folder = folder;
            Api = api;
        }

        public Uri Api { get; }

        public string Log => process.Log;

        public static async Task<PrometheusProcess> StartAsync(int metricsPort)
        {
            var folder = Directory.CreateTempSubdirectory("prometheus-").FullName;
            var shipped = await File.ReadAllTextAsync(Repo.Path("ops", "prometheus", "prometheus.yml"));
            Assert.Contains("127.0.0.1:9464", shipped, StringComparison.Ordinal);
            var config = shipped
                .Replace("127.0.0.1:9464", $"127.0.0.1:{metricsPort}", StringComparison.Ordinal)
                .Replace("scrape_interval: 15s", "scrape_interval: 1s", StringComparison.Ordinal)
                .Replace("evaluation_interval: 15s", "evaluation_interval: 1s", StringComparison.Ordinal);
            await File.WriteAllTextAsync(System.IO.Path.Combine(folder, "prometheus.yml"), config);
            File.Copy(Repo.Path("ops", "prometheus", "gameserver.rules.yml"), System.IO.Path.Combine(folder, "gameserver.rules.yml"));

            var webPort = TestServer.FreePort();
            var process = ToolProcess.Start(
                "prometheus", "prometheus", folder,
                "--config.file=prometheus.yml", $"--storage.tsdb.path={System.IO.Path.Combine(folder, "data")}", $"--web.listen-address=127.0.0.1:{webPort}");
            return new PrometheusProcess(process, folder, new Uri($"http://127.0.0.1:{webPort}/api/v1/"));
        }

        public void Dispose()
        {
            process.Dispose();
            Directory.Delete(folder, recursive: true);
        }
    }
}
