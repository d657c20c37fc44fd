using System.Diagnostics;
using GameClient;
using GameProtocol;
using TcpConnections;
using GameServer.Tests.Infrastructure;

namespace GameServer.Tests;

/// <summary>Floods, storms and slow readers end only the offender, with their own reason, and memory stays bounded.</summary>
public class LimitTests
{
    private static readonly TimeSpan CaseTimeout = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task FrameFlood_IsRateLimited_WithAnErrorFrame()
    {
        var metricsPort = TestServer.FreePort();
        await using var server = await TestServer.StartAsync("--Limits:FramesPerSecond=50", "--Limits:FrameBurst=100", $"--Metrics:Port={metricsPort}");
        using var wire = await Wire.ConnectAsync(server.EndPoint);
        await wire.SendAsync(new Hello(1, "flood", null));
        var serverSide = await server.ServerSideOfAsync(wire.Socket.LocalEndPoint);
        var flood = Enumerable.Range(0, 1000).SelectMany(i => Wire.Frame(new Move(i, 1, 1))).ToArray();
        await wire.SendRawAsync(flood);

        var messages = await wire.ReceiveUntilEndAsync();
        var error = Assert.IsType<Error>(messages[^1]);
        Assert.Equal(ProtocolErrorCodes.RateLimited, error.Code);
        var closed = await serverSide.Closed.WaitAsync(CaseTimeout);
        Assert.Equal(CloseReason.RateLimited, closed.Reason);
        Assert.Contains("more than 50 frames/s (burst 100)", closed.Detail, StringComparison.Ordinal);
        await server.AssertAllClosedAsync();
        var ended = server.Logs.Entries.Single(e => e.EventId.Id == 3005); // logged before the registry lets go
        // The burst (100) plus what refilled at 50/s while the flood was read; far from the 1001 frames sent.
        var handled = int.Parse(System.Text.RegularExpressions.Regex.Match(ended.Message, @"ended \(\w+\): (\d+) messages handled").Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        Assert.InRange(handled, 100, 110);
        await AssertClosedMetricAsync(metricsPort, "rate_limited");
    }

    [Fact]
    public async Task ByteFlood_IsRateLimited()
    {
        await using var server = await TestServer.StartAsync("--Limits:BytesPerSecond=10000", "--Limits:ByteBurst=20000");
        await using var client = await GameConnection.ConnectAsync(server.ClientOptions("bytes"));
        var serverSide = await server.ServerSideOfAsync(client.LocalEndPoint);
        for (var i = 0; i < 10; i++)
        {
            _ = client.WriteAsync(new Echo(i, new byte[4000]));
        }

        client.Flush();
        var report = await client.Closed.WaitAsync(CaseTimeout);
        Assert.Equal(ProtocolErrorCodes.RateLimited, report.ServerError?.Code);
        Assert.Equal(CloseReason.RateLimited, (await serverSide.Closed.WaitAsync(CaseTimeout)).Reason);
        await server.AssertAllClosedAsync();
    }

    [Fact]
    public async Task ConnectionStorm_BeyondMaxConnections_GetsServerFull_OthersUnaffected()
    {
        var metricsPort = TestServer.FreePort();
        await using var server = await TestServer.StartAsync("--Limits:MaxConnections=3", $"--Metrics:Port={metricsPort}");
        var players = new List<GameConnection>();
        for (var i = 0; i < 3; i++)
        {
            players.Add(await GameConnection.ConnectAsync(server.ClientOptions($"p{i}")));
        }

        var refused = new List<Task<List<IMessage>>>();
        var wires = new List<Wire>();
        for (var i = 0; i < 20; i++)
        {
            var wire = await Wire.ConnectAsync(server.EndPoint);
            wires.Add(wire);
            refused.Add(wire.ReceiveUntilEndAsync());
        }

        var stopwatch = Stopwatch.StartNew();
        foreach (var answer in await Task.WhenAll(refused))
        {
            Assert.Equal(ProtocolErrorCodes.ServerFull, Assert.IsType<Error>(Assert.Single(answer)).Code);
        }

        Assert.True(stopwatch.Elapsed < TimeSpan.FromSeconds(10), "refused quickly, not at a timeout");
        int ServerFullCloses() => server.Logs.Entries.Count(e => e.EventId.Id == 1001 && e.Message.Contains("closed: server_full", StringComparison.Ordinal));
        for (var i = 0; i < 500 && ServerFullCloses() < 20; i++)
        {
            await Task.Delay(10); // the close line follows the client's EOF by a moment
        }

        Assert.Equal(20, ServerFullCloses());
        await AssertClosedMetricAsync(metricsPort, "server_full");

        foreach (var player in players)
        {
            await player.SendAsync(new Echo(1, [1]));
            await Receive.NextAsync<Echo>(player);

            await player.GoodbyeAsync();
        }

        wires.ForEach(w => w.Dispose());
        await server.AssertAllClosedAsync();
    }

    [Fact]
    public async Task PongForAPingNeverSent_IsAProtocolError()
    {
        await using var server = await TestServer.StartAsync();
        using var wire = await Wire.ConnectAsync(server.EndPoint);
        await wire.SendAsync(new Hello(1, "pong", null));
        await wire.SendAsync(new Pong(12345, 0));
        var messages = await wire.ReceiveUntilEndAsync();
        Assert.Equal(ProtocolErrorCodes.UnexpectedPong, Assert.IsType<Error>(messages[^1]).Code);
        await server.AssertAllClosedAsync();
    }

    [Fact]
    public async Task SlowReaders_100InBusyRooms_AreClosedAsSlowConsumer_MemoryBounded_OthersOnTime()
    {
        await using var server = await TestServer.StartAsync(
            "--Game:TickRateHz=50", "--Server:SlowConsumerTimeoutMs=1500", "--Server:ShutdownTimeoutMs=2000");
        var healthy = new List<GameConnection>();
        for (var i = 0; i < 5; i++)
        {
            var player = await GameConnection.ConnectAsync(server.ClientOptions($"ok{i}"));
            await player.SendAsync(new JoinRoom($"room{i}"));
            healthy.Add(player);
        }

        // 100 readers that never read, in the same busy rooms, each asking for far more than memory could hold
        // (1,000,000 × 1 KB per reader): only backpressure keeps the server's memory bounded.
        var slow = new List<GameConnection>();
        var slowSides = new List<TcpConnection>();
        for (var i = 0; i < 100; i++)
        {
            var reader = await GameConnection.ConnectAsync(server.ClientOptions($"slow{i}"));
            slowSides.Add(await server.ServerSideOfAsync(reader.LocalEndPoint));
            reader.PauseReading();
            await reader.SendAsync(new JoinRoom($"room{i % 5}"));
            await reader.SendAsync(new StreamRequest(1_000_000, 1000, 0));
            slow.Add(reader);
        }

        // Healthy players keep getting StateUpdates on time while the slow ones fill up and are cut off.
        var gaps = healthy.Select(p => UpdateWatch.MaxGapAsync(p, TimeSpan.FromSeconds(4))).ToList();
        var closes = await Task.WhenAll(slowSides.Select(s => s.Closed.WaitAsync(CaseTimeout)));
        Assert.All(closes, c => Assert.Equal(CloseReason.SlowConsumer, c.Reason));
        foreach (var gap in await Task.WhenAll(gaps))
        {
            Assert.True(gap < TimeSpan.FromSeconds(1), $"a healthy player waited {gap.TotalMilliseconds:0} ms for a StateUpdate");
        }

        // Only after the watch: the collections forced here stop this whole process, the server in it too (seen as a
        // 770-810 ms gap for every healthy player at once, on the code before and after the allocation-free tick).
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        var managed = GC.GetTotalMemory(forceFullCollection: true);
        Assert.True(managed < 512L * 1024 * 1024, $"managed heap {managed / (1024 * 1024)} MB after 100 slow readers");

        foreach (var player in healthy)
        {
            await player.GoodbyeAsync();
        }

        foreach (var reader in slow)
        {
            await reader.DisposeAsync();
        }

        await server.AssertAllClosedAsync();
    }

    /// <summary>The close reason shows on the Prometheus endpoint as its own series.</summary>
    private static async Task AssertClosedMetricAsync(int port, string reason)
    {
        using var http = new HttpClient();
        var pattern = new System.Text.RegularExpressions.Regex($"gameserver_connections_closed_total\\{{[^}}]*reason=\"{reason}\"[^}}]*\\}} [1-9]");
        var text = string.Empty;
        for (var i = 0; i < 50 && !pattern.IsMatch(text); i++)
        {
            text = await http.GetStringAsync(new Uri($"http://127.0.0.1:{port}/metrics"));
            await Task.Delay(100);
        }

        Assert.Matches(pattern, text);
    }
}
