using System.Net;
using System.Net.Http;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using GameClient;
using GameProtocol;
using GameServer.Hosting;
using GameServer.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace GameServer.Tests;

/// <summary>
/// What an operator's tools see: the probes a load balancer or Kubernetes asks, the metrics Prometheus scrapes (where
/// it is told to listen, under the service's name, with the runtime's own meters), the OTLP push, and JSON logs.
/// </summary>
public class OpsEndpointTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(15);

    [Fact]
    public async Task Healthz_IsAlive_AndReadyz_IsReadyOnlyUnderTheConnectionCap()
    {
        var port = TestServer.FreePort();
        await using var server = await TestServer.StartAsync($"--Metrics:Port={port}", "--Limits:MaxConnections=2");
        using var http = new HttpClient();
        var ops = new Uri($"http://127.0.0.1:{port}/");

        Assert.Equal((HttpStatusCode.OK, "ready (0 of 2 connections)"), await GetAsync(http, new Uri(ops, "readyz")));
        await using var first = await GameConnection.ConnectAsync(server.ClientOptions("a"));
        await using (var second = await GameConnection.ConnectAsync(server.ClientOptions("b")))
        {
            Assert.Equal((HttpStatusCode.ServiceUnavailable, "at the connection cap (2 of 2)"), await GetAsync(http, new Uri(ops, "readyz")));
            Assert.Equal((HttpStatusCode.OK, "alive"), await GetAsync(http, new Uri(ops, "healthz")));
            await second.GoodbyeAsync();
        }

        await EventuallyAsync(async () => await GetAsync(http, new Uri(ops, "readyz")) == (HttpStatusCode.OK, "ready (1 of 2 connections)"));
        Assert.Equal(HttpStatusCode.NotFound, (await GetAsync(http, new Uri(ops, "ready"))).Status);
        using var post = await http.PostAsync(new Uri(ops, "readyz"), null);
        Assert.Equal(HttpStatusCode.MethodNotAllowed, post.StatusCode);
    }

    [Fact]
    public async Task Readyz_SaysShuttingDown_BeforeTheFirstGoodbye_AndTheProbesAnswerThroughTheDrain()
    {
        var port = TestServer.FreePort();
        var server = await TestServer.StartAsync($"--Metrics:Port={port}", "--Server:ShutdownTimeoutMs=3000");
        using var http = new HttpClient();
        var ops = new Uri($"http://127.0.0.1:{port}/");
        try
        {
            // A peer that never answers the Goodbye keeps the drain open until Server:ShutdownTimeoutMs.
            using var wire = await Wire.ConnectAsync(server.EndPoint);
            await wire.SendAsync(new Hello(1, "stays", null));
            Assert.IsType<Welcome>(await wire.ReceiveAsync());
            Assert.Equal((HttpStatusCode.OK, "ready (1 of 10000 connections)"), await GetAsync(http, new Uri(ops, "readyz")));

            // What readiness said at the moment the host logged that it was about to send the Goodbyes.
            var host = server.Services.GetRequiredService<GameServerHost>();
            (bool Ready, string Reason)? atStopping = null;
            server.Logs.OnEntry = e =>
            {
                if (e.EventId.Id == 2002)
                {
                    atStopping = host.Readiness();
                }
            };

            var stopping = server.StopAsync();
            var goodbye = Assert.IsType<Goodbye>(await wire.ReceiveAsync(Patience));
            Assert.Equal("server_shutdown", goodbye.Reason);

            Assert.Equal((false, "shutting down"), atStopping);

            // The Goodbye is here: a balancer asking now is told to send nobody new.
            Assert.Equal((HttpStatusCode.ServiceUnavailable, "shutting down"), await GetAsync(http, new Uri(ops, "readyz")));
            Assert.Equal((HttpStatusCode.OK, "alive"), await GetAsync(http, new Uri(ops, "healthz")));
            Assert.False(stopping.IsCompleted, "the drain should still be waiting for the peer's Goodbye");
            await stopping.WaitAsync(TimeSpan.FromSeconds(30));
        }
        finally
        {
            await server.DisposeAsync();
        }

        // The listener went last, with the host.
        await Assert.ThrowsAsync<HttpRequestException>(() => http.GetAsync(new Uri(ops, "healthz")));
    }

    [Fact]
    public async Task TheListener_BindsMetricsAddress_AndNothingElse()
    {
        var port = TestServer.FreePort();
        await using var server = await TestServer.StartAsync($"--Metrics:Port={port}", "--Metrics:Address=127.0.0.2");
        using var http = new HttpClient();

        Assert.Equal((HttpStatusCode.OK, "alive"), await GetAsync(http, new Uri($"http://127.0.0.2:{port}/healthz")));
        var refused = await Assert.ThrowsAsync<HttpRequestException>(() => http.GetAsync(new Uri($"http://127.0.0.1:{port}/healthz")));
        Assert.Equal(SocketError.ConnectionRefused, Assert.IsType<SocketException>(refused.InnerException).SocketErrorCode);
        Assert.Equal(new Uri($"http://127.0.0.2:{port}/"), server.Services.GetRequiredService<OpsEndpoint>().Address);
    }

    [Fact]
    public async Task Metrics_CarryTheServiceName_AndTheRuntimesOwnMeters()
    {
        var port = TestServer.FreePort();
        await using var server = await TestServer.StartAsync($"--Metrics:Port={port}", "--Metrics:ServiceName=game-eu-1");
        GC.Collect();
        using var http = new HttpClient();

        var text = await http.GetStringAsync(new Uri($"http://127.0.0.1:{port}/metrics"));

        Assert.Matches("target_info\\{[^}]*service_name=\"game-eu-1\"", text);
        Assert.Matches("(?m)^dotnet_gc_collections_total\\{[^}]*\\} [1-9]", text);
        Assert.Matches("(?m)^dotnet_thread_pool_thread_count(_total)?(\\{[^}]*\\})? [0-9]", text);
        Assert.Matches("(?m)^gameserver_rooms_active(\\{[^}]*\\})? 0", text);
    }

    [Fact]
    public async Task EveryCounter_AndEveryCloseReason_IsThereAtZero_FromTheFirstScrape()
    {
        // increase() over a series that starts at 1 sees no increase: an alert on the first internal_error needs the 0.
        var port = TestServer.FreePort();
        await using var server = await TestServer.StartAsync($"--Metrics:Port={port}");
        using var http = new HttpClient();

        var text = await http.GetStringAsync(new Uri($"http://127.0.0.1:{port}/metrics"));

        foreach (var reason in TcpConnections.CloseReason.Core.Concat(GameProtocol.Pipeline.GameCloseReasons.All))
        {
            Assert.Matches($"(?m)^gameserver_connections_closed_total\\{{[^}}]*reason=\"{reason.Name}\"[^}}]*\\}} 0", text);
        }

        Assert.Matches("(?m)^gameserver_connections_active(\\{[^}]*\\})? 0", text);
        foreach (var counter in new[] { "connections_opened", "frames_received", "frames_sent", "bytes_received", "bytes_sent", "sessions_resumed", "sessions_expired", "sessions_taken_over", "state_updates_coalesced" })
        {
            Assert.Matches($"(?m)^gameserver_{counter}_total(\\{{[^}}]*\\}})? 0", text);
        }
    }

    [Fact]
    public async Task Otlp_PushesTheSameMetrics_ToTheConfiguredCollector()
    {
        // A collector on loopback that takes OTLP over HTTP: the request is protobuf, whose strings travel as UTF-8.
        var collectorPort = TestServer.FreePort();
        using var collector = new HttpListener();
        collector.Prefixes.Add($"http://127.0.0.1:{collectorPort}/");
        collector.Start();
        var received = new TaskCompletionSource<(HttpListenerRequest Request, byte[] Body)>(TaskCreationOptions.RunContinuationsAsynchronously);
        _ = ServeAsync();

        async Task ServeAsync()
        {
            // Every push is answered (a collector that stops answering would hold the exporter's last push at shutdown).
            while (collector.IsListening)
            {
                HttpListenerContext context;
                try
                {
                    context = await collector.GetContextAsync();
                }
                catch (Exception ex) when (ex is HttpListenerException or ObjectDisposedException)
                {
                    return;
                }

                using var body = new MemoryStream();
                await context.Request.InputStream.CopyToAsync(body);
                received.TrySetResult((context.Request, body.ToArray()));
                context.Response.StatusCode = 200;
                context.Response.Close();
            }
        }

        await using var server = await TestServer.StartAsync(
            $"--Metrics:Otlp:Endpoint=http://127.0.0.1:{collectorPort}/v1/metrics", "--Metrics:Otlp:Protocol=http/protobuf",
            "--Metrics:Otlp:ExportIntervalMs=1000");
        var (request, body) = await received.Task.WaitAsync(Patience);

        Assert.Equal("POST", request.HttpMethod);
        Assert.Equal("/v1/metrics", request.Url!.AbsolutePath);
        Assert.Equal("application/x-protobuf", request.ContentType);
        var text = Encoding.UTF8.GetString(body);
        Assert.Contains("gameserver.rooms.active", text, StringComparison.Ordinal);
        Assert.Contains("service.name", text, StringComparison.Ordinal);
        Assert.Contains("gameserver", text.Replace("gameserver.", string.Empty, StringComparison.Ordinal), StringComparison.Ordinal);
        Assert.Contains(server.Logs.Entries, e => e.EventId.Id == 2012 && e.Message.Contains("http/protobuf", StringComparison.Ordinal));
    }

    [Fact]
    public async Task JsonLogs_GiveTheCloseLinesFieldsAsProperties()
    {
        var port = TestServer.FreePort();
        using var process = BotProcess.StartIn(
            null,
            BotProcess.BuiltDll("GameServer", "GameServer.dll"),
            $"--Server:Port={port}", "--Metrics:Port=0", "--Logging:Format=json", $"--Server:Transport={TestServer.DefaultTransport}");
        var listening = await process.WaitForLineAsync(l => l.Contains("\"EventId\":2000", StringComparison.Ordinal), TimeSpan.FromSeconds(60));
        using (JsonDocument.Parse(listening))
        {
            // Every line is one JSON object.
        }

        await using (var client = await GameConnection.ConnectAsync(new GameClientOptions { Host = "127.0.0.1", Port = port, PlayerName = "json" }))
        {
            await client.SendAsync(new Echo(1, [1, 2, 3]));
            await client.GoodbyeAsync();
        }

        var line = await process.WaitForLineAsync(l => l.Contains("\"EventId\":1001", StringComparison.Ordinal), Patience);
        using var json = JsonDocument.Parse(line);
        var state = json.RootElement.GetProperty("State");
        Assert.Equal("GameServer.Connection", json.RootElement.GetProperty("Category").GetString());
        Assert.Equal("client_goodbye", state.GetProperty("Reason").GetString());
        Assert.Equal("-", state.GetProperty("Errno").GetString()); // a Goodbye ends with no socket error
        Assert.True(state.GetProperty("DurationMs").GetInt64() >= 0);
        Assert.Equal(3, state.GetProperty("FramesIn").GetInt64()); // Hello, Echo, Goodbye
        Assert.True(state.GetProperty("FramesOut").GetInt64() >= 2); // Welcome, Echo (and the Goodbye answer)
        Assert.True(state.GetProperty("BytesIn").GetInt64() > 0);
        Assert.True(state.GetProperty("BytesOut").GetInt64() > 0);
        Assert.StartsWith("127.0.0.1:", state.GetProperty("RemoteEndPoint").GetString(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--Server:Port=70000", "Configuration error: Server:Port = '70000' is invalid")]
    [InlineData("--Server:DrainTimeoutMs=200", "Configuration error: 'ErrorOnUnknownConfiguration' was set")]
    [InlineData("--Logging:Format=xml", "Configuration error: Logging:Format = 'xml' is invalid")]
    public async Task AConfigurationMistake_EndsTheProcessWithExitCode2_AndOneLine_NoStackTrace(string setting, string expected)
    {
        // Exit code 2 is what the systemd unit does not restart (RestartPreventExitStatus=2).
        using var process = BotProcess.StartIn(null, BotProcess.BuiltDll("GameServer", "GameServer.dll"), "--Metrics:Port=0", setting);
        Assert.Equal(2, await process.WaitExitAsync(TimeSpan.FromSeconds(60)));
        Assert.Contains(expected, process.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", process.Output, StringComparison.Ordinal);
    }

    private static async Task<(HttpStatusCode Status, string Body)> GetAsync(HttpClient http, Uri uri)
    {
        using var response = await http.GetAsync(uri);
        return (response.StatusCode, (await response.Content.ReadAsStringAsync()).TrimEnd('\n'));
    }

    private static async Task EventuallyAsync(Func<Task<bool>> condition)
    {
        var deadline = DateTime.UtcNow + Patience;
        while (!await condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "the condition did not hold in time");
            await Task.Delay(20);
        }
    }
}
