using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using GameClient;
using GameProtocol;
using TcpConnections;
using GameServer.Options;
using GameServer.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Xunit.Abstractions;

namespace GameServer.Tests;

/// <summary>
/// Case S1 and the hung client: a peer that sends nothing at all (no FIN, no RST) is found within a bounded,
/// configured time, and the reason says how it was found.
/// </summary>
public partial class DeadPeerTests(ITestOutputHelper output)
{
    private const int IntervalMs = 200;
    private const int Misses = 3;
    private const int HeartbeatDeferredEvent = 1012;

    // interval × (misses + 1) is the bound; the extra second is for a loaded 2-core CI machine's scheduling.
    private static readonly TimeSpan HeartbeatBound = TimeSpan.FromMilliseconds(IntervalMs * (Misses + 1)) + TimeSpan.FromSeconds(1);

    /// <summary>
    /// The longest a peer the heartbeat takes for a slow reader can last without a frame: the heartbeat's bound plus the
    /// slow-consumer timeout it defers for (HeartbeatHandler), with the same second of slack.
    /// </summary>
    private static TimeSpan DeferralBound(int slowConsumerTimeoutMs) => HeartbeatBound + TimeSpan.FromMilliseconds(slowConsumerTimeoutMs);

    /// <summary>
    /// A raw client with a 4 KB receive buffer, the outside test's, that sends Hello and <paramref name="request"/> in
    /// one write: the server reads them together, so no heartbeat interval can pass between them however slow the
    /// machine, and the peer's quiet time starts when the request is sent at the earliest.
    /// </summary>
    private static async Task<Wire> ConnectWithSmallWindowAsync(IPEndPoint server, string name, IMessage request)
    {
        // Before connecting: the window scale is agreed in the handshake.
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true, ReceiveBufferSize = 4096 };
        await socket.ConnectAsync(server);
        var wire = new Wire(socket);
        await wire.SendRawAsync([.. Wire.Frame(new Hello(Framing.ProtocolVersion1, name, null)), .. Wire.Frame(request)]);
        return wire;
    }

    [Fact]
    public async Task HungClient_Silent_IsClosedAsHeartbeatTimeout_WithinTheBound()
    {
        await using var server = await TestServer.StartAsync($"--Heartbeat:IntervalMs={IntervalMs}", $"--Heartbeat:Misses={Misses}");
        var client = await GameConnection.ConnectAsync(server.ClientOptions("hung"));
        var serverSide = await server.ServerSideOfAsync(client.LocalEndPoint);

        var silent = Stopwatch.StartNew();
        _ = client.CloseAsync(ClientCloseMode.Silent);
        var closed = await serverSide.Closed.WaitAsync(TimeSpan.FromSeconds(30));
        silent.Stop();

        Assert.Equal(CloseReason.HeartbeatTimeout, closed.Reason);
        Assert.InRange(silent.Elapsed, TimeSpan.FromMilliseconds(IntervalMs * (Misses - 1)), HeartbeatBound);
        await server.AssertAllClosedAsync();
        await client.DisposeAsync(); // hung: it reads nothing, so it has not even noticed the server's RST

    }

    [Fact]
    public async Task HungClient_ProcessStoppedWithSigstop_IsClosedAsHeartbeatTimeout()
    {
        // A bot process is cold: on a loaded 2-core machine its first frames after Hello (JIT) were seen to take longer
        // than 3 intervals of 200 ms, and the heartbeat ended it before it was stopped. So this case gives it more
        // misses, and bounds the detection by them.
        const int misses = 8;
        var bound = TimeSpan.FromMilliseconds(IntervalMs * (misses + 1)) + TimeSpan.FromSeconds(1);
        await using var server = await TestServer.StartAsync($"--Heartbeat:IntervalMs={IntervalMs}", $"--Heartbeat:Misses={misses}");
        using var bot = BotProcess.Start("--port", server.EndPoint.Port.ToString(), "--name", "stopped", "--room", "r", "--hold-ms", "120000", "--quiet");
        await bot.WaitReadyAsync();
        var serverSide = server.Registry.Snapshot().Single();

        var stopped = Stopwatch.StartNew();
        bot.Signal(19); // SIGSTOP: the process is frozen, its kernel still holds the socket open
        var closed = await serverSide.Closed.WaitAsync(TimeSpan.FromSeconds(30));
        stopped.Stop();
        bot.Signal(9);

        Assert.Equal(CloseReason.HeartbeatTimeout, closed.Reason);
        Assert.True(stopped.Elapsed <= bound, $"found after {stopped.Elapsed.TotalMilliseconds:0} ms");
        await server.AssertAllClosedAsync();
    }

    [Fact]
    public async Task HungClient_WhileTheServerStreamsToIt_IsLeftToTheSlowConsumerPolicy_WithinTheDeferralBound()
    {
        // The outside test's client (4 KB receive buffer) freezes while we stream to it: it stops reading and writing,
        // its kernel stays up. Our output backs up at once and the channel turns unwritable; the heartbeat cannot tell
        // it from a slow reader, so it defers, and the slow-consumer policy ends it after its timeout, before the
        // heartbeat's deferral runs out (Misses × interval later).
        const int slowConsumerTimeoutMs = 2000;
        await using var server = await TestServer.StartAsync(
            $"--Heartbeat:IntervalMs={IntervalMs}", $"--Heartbeat:Misses={Misses}", $"--Server:SlowConsumerTimeoutMs={slowConsumerTimeoutMs}");
        using var wire = await ConnectWithSmallWindowAsync(server.EndPoint, "hung-streamed", new StreamRequest(1_000_000, 1000, 0));

        // Times are taken from the request: the stream, and so the slow-consumer timer, cannot start before it, nor can
        // the peer's quiet time. The client reads the first item, then reads and writes nothing.
        var hung = Stopwatch.StartNew();
        var serverSide = await server.ServerSideOfAsync(wire.Socket.LocalEndPoint);
        Assert.IsType<Welcome>(await wire.ReceiveAsync());
        Assert.IsType<StreamItem>(await wire.ReceiveAsync());
        var closed = await serverSide.Closed.WaitAsync(TimeSpan.FromSeconds(30));
        hung.Stop();
        var deferrals = server.Logs.Entries.Count(e => e.EventId.Id == HeartbeatDeferredEvent);
        output.WriteLine($"{closed.Reason} after {hung.Elapsed.TotalMilliseconds:0} ms; the heartbeat deferred {deferrals} times; {closed.Detail}");

        Assert.True(deferrals > 0, "the heartbeat never deferred to the slow-consumer policy");
        // The channel turns unwritable within milliseconds of the request and stays so: neither transport writes into a
        // socket that waits for room (the epoll one skips flushes while EPOLLOUT is pending), so nothing drains it below
        // the low-water mark. The second is for a loaded 2-core machine.
        Assert.Equal(CloseReason.SlowConsumer, closed.Reason);
        Assert.InRange(hung.Elapsed, TimeSpan.FromMilliseconds(slowConsumerTimeoutMs), TimeSpan.FromMilliseconds(slowConsumerTimeoutMs) + TimeSpan.FromSeconds(1));

        await server.AssertAllClosedAsync();
    }

    [Fact]
    public async Task HungClient_WithItsWindowShut_AndTooLittleQueuedToBeUnwritable_IsHeartbeatTimeout_AtTheSlowConsumerTimeoutBeyondTheBound()
    {
        // A 4 KB receive window, and a stream of 40 KB: ten windows' worth waits in our output, less than the write
        // high-water mark (64 KB), so the channel stays writable and the slow-consumer policy never starts. The peer's
        // kernel answers our probes, so the heartbeat defers, but only for the slow-consumer timeout.
        const int slowConsumerTimeoutMs = 1500;
        await using var server = await TestServer.StartAsync(
            $"--Heartbeat:IntervalMs={IntervalMs}", $"--Heartbeat:Misses={Misses}", $"--Server:SlowConsumerTimeoutMs={slowConsumerTimeoutMs}");
        using var wire = await ConnectWithSmallWindowAsync(server.EndPoint, "hung-window-shut", new StreamRequest(40, 1000, 0));

        // From here it reads and writes nothing; its quiet time starts when the server reads the request.
        var hung = Stopwatch.StartNew();
        var serverSide = await server.ServerSideOfAsync(wire.Socket.LocalEndPoint);
        var closed = await serverSide.Closed.WaitAsync(TimeSpan.FromSeconds(30));
        hung.Stop();
        output.WriteLine($"{closed.Reason} after {hung.Elapsed.TotalMilliseconds:0} ms: {closed.Detail}");

        Assert.Equal(CloseReason.HeartbeatTimeout, closed.Reason);
        Assert.Contains("alive but reading nothing of our output for the slow-consumer timeout beyond that", closed.Detail, StringComparison.Ordinal);
        Assert.InRange(hung.Elapsed, TimeSpan.FromMilliseconds((IntervalMs * Misses) + slowConsumerTimeoutMs), DeferralBound(slowConsumerTimeoutMs));
        await server.AssertAllClosedAsync();
    }

    [Fact]
    public async Task TcpTimeouts_AreReallySetOnTheAcceptedSocket()
    {
        await using var server = await TestServer.StartAsync(
            "--Tcp:KeepAliveTimeSeconds=11", "--Tcp:KeepAliveIntervalSeconds=4", "--Tcp:KeepAliveRetryCount=6", "--Tcp:UserTimeoutMs=12345");
        await using var client = await GameConnection.ConnectAsync(server.ClientOptions());
        var serverSide = await server.ServerSideOfAsync(client.LocalEndPoint);
        if (SocketAccess.TryGetSocket(serverSide.Channel) is not { } socket)
        {
            // The epoll transport: read back with getsockopt through its channel options.
            var config = serverSide.Channel.Configuration;
            Assert.True(config.GetOption(DotNetty.Transport.Channels.ChannelOption.SoKeepalive));
            Assert.Equal(11, config.GetOption(Transport.Epoll.EpollChannelOption.TcpKeepIdle));
            Assert.Equal(4, config.GetOption(Transport.Epoll.EpollChannelOption.TcpKeepInterval));
            Assert.Equal(6, config.GetOption(Transport.Epoll.EpollChannelOption.TcpKeepCount));
            Assert.Equal(12345, config.GetOption(Transport.Epoll.EpollChannelOption.TcpUserTimeout));
            await client.GoodbyeAsync();
            return;
        }

        Assert.Equal(1, (int)socket.GetSocketOption(SocketOptionLevel.Socket, SocketOptionName.KeepAlive)!);
        Assert.Equal(11, (int)socket.GetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveTime)!);
        Assert.Equal(4, (int)socket.GetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveInterval)!);
        Assert.Equal(6, (int)socket.GetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveRetryCount)!);
        Assert.Equal(12345, TcpTimeoutsHandler.ReadUserTimeoutMs(socket));
        await client.GoodbyeAsync();
    }

    [Fact]
    public async Task DeadServer_IsFoundByTheClient_AsHeartbeatTimeout()
    {
        // A "server" that welcomes and then says nothing, ever: what a client sees when the server host dies.
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        var accepting = Task.Run(async () =>
        {
            var socket = await listener.AcceptSocketAsync();
            var wire = new Wire(socket);
            await wire.ReceiveAsync(); // Hello
            await wire.SendAsync(new Welcome("mute", IntervalMs, 0));
            return wire;
        });

        var client = await GameConnection.ConnectAsync(new GameClientOptions { Port = port, HeartbeatMisses = Misses, Transport = TestServer.DefaultTransport });
        using var server = await accepting;
        var report = await client.Closed.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(CloseReason.HeartbeatTimeout, report.Reason);
        Assert.Contains($"heartbeat intervals of {IntervalMs} ms", report.Detail, StringComparison.Ordinal);
    }

    [RootFact]
    public async Task S1_PulledCable_KernelUserTimeoutFiresFirst_IsTimedOut()
    {
        const int userTimeoutMs = 1500;
        var (closeLine, elapsed, _) = await PullCableAsync(
            $"--Tcp:UserTimeoutMs={userTimeoutMs}", "--Heartbeat:IntervalMs=20000", "--Heartbeat:Misses=3");
        output.WriteLine($"user timeout {userTimeoutMs} ms: found after {elapsed.TotalMilliseconds:0} ms");
        Assert.Contains("closed: timed_out (errno 110:", closeLine, StringComparison.Ordinal);

        // TCP_USER_TIMEOUT is checked when a retransmission timer fires, so detection lands a little after it.
        Assert.True(elapsed <= TimeSpan.FromMilliseconds(userTimeoutMs) + TimeSpan.FromSeconds(4), $"found after {elapsed.TotalMilliseconds:0} ms");
    }

    [RootFact]
    public async Task S1_PulledCable_HeartbeatFiresFirst_IsHeartbeatTimeout_OnBothSides()
    {
        var (closeLine, elapsed, bot) = await PullCableAsync(
            "--Tcp:UserTimeoutMs=60000", $"--Heartbeat:IntervalMs={IntervalMs}", $"--Heartbeat:Misses={Misses}");
        output.WriteLine($"heartbeat {IntervalMs} ms x {Misses}: found after {elapsed.TotalMilliseconds:0} ms");
        Assert.Contains("closed: heartbeat_timeout", closeLine, StringComparison.Ordinal);
        Assert.True(elapsed <= HeartbeatBound, $"found after {elapsed.TotalMilliseconds:0} ms");

        // The client, behind the same pulled cable, finds the dead server by the same rule.
        var clientLine = await bot.WaitForLineAsync(l => l.StartsWith("closed ", StringComparison.Ordinal), TimeSpan.FromSeconds(30));
        Assert.StartsWith("closed reason=heartbeat_timeout", clientLine, StringComparison.Ordinal);
        bot.Dispose();
    }

    [RootFact]
    public async Task S1_PulledCable_WhileTheServerStreams_WithTheShippedTcpSettings_IsHeartbeatTimeout_WithinTheBound()
    {
        // Our output is backed up behind the dead peer as behind a slow reader, but its kernel answers nothing: its
        // retransmissions or probes go unanswered, so the heartbeat does not defer. TCP_USER_TIMEOUT is off (the
        // shipped default), so only the heartbeat can find it.
        var (closeLine, elapsed, bot) = await PullCableWhilePlayingAsync(
            ["--stream", "1000000", "--stream-payload", "1024", "--wait-stream-items", "100"],
            [$"--Heartbeat:IntervalMs={IntervalMs}", $"--Heartbeat:Misses={Misses}"]);
        bot.Dispose();
        output.WriteLine($"heartbeat {IntervalMs} ms x {Misses}, streaming: found after {elapsed.TotalMilliseconds:0} ms: {closeLine}");
        Assert.Contains("closed: heartbeat_timeout", closeLine, StringComparison.Ordinal);
        Assert.Contains("the peer's kernel stopped answering", closeLine, StringComparison.Ordinal);
        Assert.True(elapsed <= HeartbeatBound, $"found after {elapsed.TotalMilliseconds:0} ms");
    }

    [RootFact]
    public async Task S1_PulledCable_OnAnIdleConnection_KeepaliveFindsIt_IsTimedOut()
    {
        // Nothing is being sent (no room, heartbeat far away), so only keepalive probes can notice: 1 s idle, then
        // 2 probes 1 s apart.
        var (closeLine, elapsed, bot) = await PullCableAsync(
            inRoom: false,
            "--Tcp:KeepAliveTimeSeconds=1", "--Tcp:KeepAliveIntervalSeconds=1", "--Tcp:KeepAliveRetryCount=2",
            "--Tcp:UserTimeoutMs=0", "--Heartbeat:IntervalMs=60000");
        bot.Dispose();
        output.WriteLine($"keepalive 1 s + 2 x 1 s: found after {elapsed.TotalMilliseconds:0} ms");
        Assert.Contains("closed: timed_out (errno 110:", closeLine, StringComparison.Ordinal);
        Assert.InRange(elapsed, TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(3) + TimeSpan.FromSeconds(3));
    }

    /// <summary>
    /// Server and client in a private namespace; once the client plays in a room (so the server keeps sending to it),
    /// every packet of its connection is dropped in both directions. Returns the server's close line and how long
    /// after the cable was pulled it appeared.
    /// </summary>
    private static Task<(string CloseLine, TimeSpan Elapsed, BotProcess Bot)> PullCableAsync(params string[] serverSettings) =>
        PullCableAsync(inRoom: true, serverSettings);

    private static Task<(string CloseLine, TimeSpan Elapsed, BotProcess Bot)> PullCableAsync(bool inRoom, params string[] serverSettings) =>
        PullCableWhilePlayingAsync(inRoom ? ["--room", "r", "--moves", "3"] : [], serverSettings);

    /// <summary>As above, with the bot playing <paramref name="play"/> (its options before the close step).</summary>
    private static async Task<(string CloseLine, TimeSpan Elapsed, BotProcess Bot)> PullCableWhilePlayingAsync(string[] play, string[] serverSettings)
    {
        using var ns = NetNamespace.Create();
        using var server = BotProcess.StartIn(
            ns.Name,
            BotProcess.BuiltDll("GameServer", "GameServer.dll"),
            ["--Tcp:KeepAliveTimeSeconds=60", .. serverSettings, "--Server:Port=7777", "--Metrics:Port=0", $"--Server:Transport={TestServer.DefaultTransport}"]);
        await server.WaitForLineAsync(l => l.Contains("Game server listening on", StringComparison.Ordinal));

        var bot = BotProcess.StartIn(
            ns.Name, BotProcess.BuiltDll("GameClient", "Bot", "GameClient.Bot.dll"),
            [.. play, "--port", "7777", "--name", "cable", "--hold-ms", "120000", "--quiet", "--transport", TestServer.DefaultTransport]);
        try
        {
            var welcome = await bot.WaitForLineAsync(l => l.StartsWith("welcome ", StringComparison.Ordinal));
            var clientPort = int.Parse(LocalPort().Match(welcome).Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
            await bot.WaitReadyAsync();

            var pulled = Stopwatch.StartNew();
            ns.PullCable(clientPort);
            var closeLine = await server.WaitForLineAsync(
                l => l.Contains($"127.0.0.1:{clientPort} closed: ", StringComparison.Ordinal), TimeSpan.FromSeconds(60));
            pulled.Stop();
            server.Signal(15);
            await server.WaitExitAsync();
            return (closeLine, pulled.Elapsed, bot);
        }
        catch
        {
            bot.Dispose();
            throw;
        }
    }

    [GeneratedRegex(@"local=[^ ]*:(\d+)")]
    private static partial Regex LocalPort();
}
