using GameClient;
using GameProtocol;
using GameProtocol.Pipeline;
using TcpConnections;
using GameServer.Tests.Infrastructure;

namespace GameServer.Tests;

/// <summary>A whole session against the real server in process, over real sockets.</summary>
public class EndToEndTests
{
    [Fact]
    public async Task Session_HelloJoinMoveStateEchoGoodbye_CountsMatch()
    {
        await using var server = await TestServer.StartAsync("--Game:TickRateHz=50");
        await using var client = await GameConnection.ConnectAsync(server.ClientOptions("alice"));
        Assert.NotNull(client.Welcome);
        Assert.Equal(5000, client.Welcome!.HeartbeatIntervalMs);
        Assert.InRange(client.Welcome.ServerTimeUnixMs, DateTimeOffset.UtcNow.AddMinutes(-1).ToUnixTimeMilliseconds(), DateTimeOffset.UtcNow.AddMinutes(1).ToUnixTimeMilliseconds());

        await client.SendAsync(new JoinRoom("lobby"));
        for (var i = 1; i <= 10; i++)
        {
            await client.SendAsync(new Move(i, i * 2, -i));
        }

        // A StateUpdate eventually shows our last move.
        var seen = await Receive.NextAsync<StateUpdate>(
            client, u => u.Players.Any(p => p.PlayerId == client.Welcome.SessionId && p.LastSeq == 10));

        var me = seen.Players.Single(p => p.PlayerId == client.Welcome.SessionId);
        Assert.Equal((20f, -10f), (me.X, me.Y));

        await client.SendAsync(new Echo(77, [5, 6, 7]));
        var echo = await Receive.NextAsync<Echo>(client);
        Assert.Equal(77, echo.Seq);
        Assert.Equal([5, 6, 7], echo.Payload);

        var serverSide = await server.ServerSideOfAsync(client.LocalEndPoint);
        var goodbye = await client.GoodbyeAsync("done");
        var report = await client.Closed.WaitAsync(TimeSpan.FromSeconds(30));

        // Each side proves nothing was lost: the server received every frame we sent, Goodbye included.
        Assert.Equal(client.FramesSent, goodbye.FramesReceived);
        Assert.Equal("client_goodbye", goodbye.Reason);
        var closed = await serverSide.Closed.WaitAsync(TimeSpan.FromSeconds(15));
        Assert.Equal(GameCloseReasons.ClientGoodbye, closed.Reason);
        Assert.Equal(client.FramesSent, closed.FramesReceived);
        Assert.Equal(closed.FramesSent, report.FramesReceived);
        Assert.Equal(GameCloseReasons.ClientGoodbye, report.Reason);
        await server.AssertAllClosedAsync();
    }

    [Fact]
    public async Task Stream_DeliversEveryItemInOrder()
    {
        await using var server = await TestServer.StartAsync();
        await using var client = await GameConnection.ConnectAsync(server.ClientOptions());
        await client.SendAsync(new StreamRequest(2000, 1000, 0));
        var next = 0;
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        while (next < 2000)
        {
            var m = await client.Incoming.ReadAsync(timeout.Token);
            if (m is StreamItem item)
            {
                Assert.True(next == item.Index, $"expected {next}, got {item.Index}");
                next++;
                Assert.Equal(1000, item.Payload.Length);
            }
        }

        await client.GoodbyeAsync();
        await server.AssertAllClosedAsync();
    }

    [Fact]
    public async Task UnreachableServer_IsAClearClientError()
    {
        var port = TestServer.FreePort();
        var ex = await Assert.ThrowsAsync<GameClientException>(
            () => GameConnection.ConnectAsync(new GameClientOptions { Port = port, Transport = TestServer.DefaultTransport }));
        Assert.Contains($"127.0.0.1:{port}", ex.Message, StringComparison.Ordinal);
        Assert.Contains("refused", ex.Message, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public async Task RefusedConnects_LeaveNoSocketOpen()
    {
        // A reconnecting client meets refusals in a row; each attempt's socket must be closed, whatever the transport
        // does with a channel whose connect failed (DotNetty's stock one leaves it open).
        const int Attempts = 50;
        var port = TestServer.FreePort();
        var before = OpenSockets();
        for (var i = 0; i < Attempts; i++)
        {
            await Assert.ThrowsAsync<GameClientException>(
                () => GameConnection.ConnectAsync(new GameClientOptions { Port = port, Transport = TestServer.DefaultTransport }));
        }

        // Other sockets of the process may come and go meanwhile; a leak shows as one per attempt.
        var leaked = OpenSockets() - before;
        Assert.True(leaked < Attempts / 5, $"{leaked} more sockets open after {Attempts} refused connects");
    }

    private static int OpenSockets() =>
        Directory.EnumerateFileSystemEntries("/proc/self/fd").Count(fd => new FileInfo(fd).LinkTarget?.StartsWith("socket:", StringComparison.Ordinal) == true);
}
