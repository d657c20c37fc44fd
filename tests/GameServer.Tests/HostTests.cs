using System.Net.Http;
using GameClient;
using GameProtocol;
using TcpConnections;
using GameServer.Hosting;
using GameServer.Tests.Infrastructure;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace GameServer.Tests;

/// <summary>The host: configuration validation, the metrics endpoint, and a clean stop with clients connected.</summary>
public class HostTests
{
    [Fact]
    public async Task Start_LogsWhereItListens_OnWhichTransport_WithWhichLeakDetection()
    {
        await using var server = await TestServer.StartAsync();
        var listening = Assert.Single(server.Logs.Entries, e => e.EventId.Id == 2000);
        Assert.Equal(
            $"Game server listening on {server.EndPoint} ({TestServer.DefaultTransport} transport, leak detection simple)",
            listening.Message);
    }

    [Fact]
    public async Task MetricsEndpoint_ServesTheCountersInPrometheusFormat()
    {
        var port = TestServer.FreePort();
        await using var server = await TestServer.StartAsync($"--Metrics:Port={port}");
        await using (var client = await GameConnection.ConnectAsync(server.ClientOptions()))
        {
            await client.SendAsync(new Echo(1, [1]));
            await client.GoodbyeAsync();
        }

        await server.AssertAllClosedAsync();
        using var http = new HttpClient();
        string text = string.Empty;
        // Every reason's series is there from the start (at 0): wait for the Goodbye's 1.
        var goodbyeCounted = new System.Text.RegularExpressions.Regex("gameserver_connections_closed_total\\{[^}]*reason=\"client_goodbye\"[^}]*\\} [1-9]");
        for (var i = 0; i < 50 && !goodbyeCounted.IsMatch(text); i++)
        {
            text = await http.GetStringAsync(new Uri($"http://127.0.0.1:{port}/metrics"));
            await Task.Delay(100);
        }

        Assert.Contains("gameserver_connections_opened_total", text, StringComparison.Ordinal);
        Assert.Contains("gameserver_connections_active", text, StringComparison.Ordinal);
        Assert.Contains("gameserver_frames_received_total", text, StringComparison.Ordinal);
        Assert.Contains("gameserver_frames_sent_total", text, StringComparison.Ordinal);
        Assert.Contains("gameserver_bytes_received_total", text, StringComparison.Ordinal);
        Assert.Contains("gameserver_bytes_sent_total", text, StringComparison.Ordinal);
        Assert.Matches("gameserver_connections_closed_total\\{[^}]*reason=\"client_goodbye\"[^}]*\\} [1-9]", text);
        Assert.Contains("gameserver_connection_duration_seconds_bucket", text, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--Server:Port=70000", "Server:Port = '70000' is invalid")]
    [InlineData("--Server:MaxFrameBytes=0", "Server:MaxFrameBytes = '0' is invalid")]
    [InlineData("--Server:Address=nowhere", "Server:Address = 'nowhere' is invalid")]
    [InlineData("--Game:TickRateHz=0", "Game:TickRateHz = '0' is invalid")]
    [InlineData("--Connection:DrainTimeoutMs=0", "Connection:DrainTimeoutMs = '0' is invalid")]
    [InlineData("--Heartbeat:Misses=0", "Heartbeat:Misses = '0' is invalid")]
    [InlineData("--Server:LeakDetection=sometimes", "Server:LeakDetection = 'sometimes' is invalid")]
    [InlineData("--Server:LeakDetection=1", "Server:LeakDetection = '1' is invalid")]
    [InlineData("--Server:LeakDetection=simple,paranoid", "Server:LeakDetection = 'simple,paranoid' is invalid")]
    [InlineData("--Metrics:Address=everywhere", "Metrics:Address = 'everywhere' is invalid")]
    [InlineData("--Metrics:ServiceName= ", "Metrics:ServiceName = ' ' is invalid")]
    [InlineData("--Metrics:Otlp:Endpoint=collector:4317", "Metrics:Otlp:Endpoint = 'collector:4317' is invalid")]
    [InlineData("--Metrics:Otlp:Protocol=udp", "Metrics:Otlp:Protocol = 'udp' is invalid")]
    [InlineData("--Metrics:Otlp:ExportIntervalMs=10", "Metrics:Otlp:ExportIntervalMs = '10' is invalid")]
    [InlineData("--Logging:Format=xml", "Logging:Format = 'xml' is invalid")]
    [InlineData("--Server:ProxyProtocolTrustedProxies:0=10.0.0.0/33", "Server:ProxyProtocolTrustedProxies = '10.0.0.0/33' is invalid")]
    public async Task BadConfiguration_FailsOnStart_NamingTheKeyAndValue(string setting, string expected)
    {
        // Logging's options fail as the host is built (the console logger is made then), the rest as it starts.
        var builder = GameServerApp.CreateBuilder(["--Server:Port=0", "--Metrics:Port=0", setting]);
        var ex = await Assert.ThrowsAsync<OptionsValidationException>(async () =>
        {
            using var host = builder.Build();
            await host.StartAsync();
        });
        Assert.Contains(ex.Failures, f => f.Contains(expected, StringComparison.Ordinal));
    }

    [Fact]
    public async Task AKeyNoOptionsClassHas_FailsOnStart_NamingIt()
    {
        // DrainTimeoutMs moved from Server to Connection: the old key must not be ignored in silence.
        var builder = GameServerApp.CreateBuilder(["--Server:Port=0", "--Metrics:Port=0", "--Server:DrainTimeoutMs=200"]);
        var ex = await Assert.ThrowsAsync<InvalidOperationException>(async () =>
        {
            using var host = builder.Build(); // the host's own options read Server's as it is built
            await host.StartAsync();
        });
        Assert.Contains("DrainTimeoutMs", ex.Message, StringComparison.Ordinal);
        Assert.Contains("ServerOptions", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task HostStop_With100Clients_EveryClientGetsGoodbye_AndCountsMatch()
    {
        var server = await TestServer.StartAsync();
        var clients = new List<GameConnection>();
        try
        {
            for (var i = 0; i < 100; i++)
            {
                var client = await GameConnection.ConnectAsync(server.ClientOptions($"p{i}"));
                await client.SendAsync(new JoinRoom($"room{i % 10}"));
                await client.SendAsync(new Move(1, i, i));
                clients.Add(client);
            }

            // Every frame sent is in the server before it stops: a frame still in flight when the server says
            // Goodbye is rightly not in its count, and the counts below would differ by a race, not by a loss.
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
            while (server.Registry.Snapshot().Sum(c => c.FramesReceived) < 300)
            {
                Assert.True(DateTime.UtcNow < deadline, "the server did not receive every client's three frames");
                await Task.Delay(10);
            }

            await server.StopAsync();
            Assert.Equal(0, server.Metrics.ActiveCount);

            foreach (var client in clients)
            {
                var report = await client.Closed.WaitAsync(TimeSpan.FromSeconds(30));
                Assert.NotNull(report.ServerGoodbye);
                Assert.Equal("server_shutdown", report.ServerGoodbye!.Reason);
                Assert.Equal(client.FramesSent - 1, report.ServerGoodbye.FramesReceived); // all but our answering Goodbye
                Assert.Equal(CloseReason.PeerClosed, report.Reason); // FIN after the Goodbye, never a reset
            }

            var closeLines = server.Logs.Entries.Where(e => e.EventId.Id == 1001 && e.Message.Contains("closed: server_shutdown", StringComparison.Ordinal)).ToList();
            Assert.Equal(100, closeLines.Count);
            Assert.All(server.Logs.Entries, e => Assert.Null(e.Exception));
        }
        finally
        {
            foreach (var client in clients)
            {
                await client.DisposeAsync();
            }

            await server.DisposeAsync();
        }
    }
}
