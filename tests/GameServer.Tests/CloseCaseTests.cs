using System.Net.Sockets;
using GameClient;
using GameProtocol;
using GameProtocol.Pipeline;
using TcpConnections;
using GameServer.Tests.Infrastructure;

namespace GameServer.Tests;

/// <summary>
/// The cases of tcp-close-cases.md, one test each, against the real server over loopback. Which packets go over the
/// wire (FIN or RST) is recorded in docs/CLOSE-HANDLING.md from a tcpdump capture; here each case asserts what the
/// kernel reported to each side: the close reason, the errno and the frame counts.
/// </summary>
public class CloseCaseTests
{
    private static readonly TimeSpan CaseTimeout = TimeSpan.FromSeconds(30);

    // The victim of a kill must hold unread data when it dies. On the stock client a receive posted before reading
    // paused can run late on a cold machine and take that data (seen: a FIN instead of the RST); the epoll client
    // reads nothing once paused. The case is about the server's classification, whatever the client's transport.
    private static readonly string[] KilledBotTransport = ["--transport", "epoll"];

    // For cases that close right after reading a frame: a heartbeat Ping must not arrive unread in between.
    private static readonly string[] QuietHeartbeat = ["--Heartbeat:IntervalMs=600000"];

    // The flooding cases are about how a connection ends, not about the flood limits (LimitTests covers those).
    private static readonly string[] NoRateLimit =
        ["--Limits:FramesPerSecond=10000000", "--Limits:FrameBurst=10000000", "--Limits:BytesPerSecond=2000000000", "--Limits:ByteBurst=2000000000"];

    [Fact]
    public async Task S2_ClientSendsManyFramesThenFin_EveryFrameIsProcessed_PeerClosed()
    {
        await using var server = await TestServer.StartAsync(NoRateLimit);
        var client = await GameConnection.ConnectAsync(server.ClientOptions("s2"));
        var serverSide = await server.ServerSideOfAsync(client.LocalEndPoint);
        for (var i = 1; i <= 10_000; i++)
        {
            _ = client.WriteAsync(new Move(i, i, i));
            if (i % 500 == 0)
            {
                client.Flush();
            }
        }

        client.Flush();
        await client.CloseAsync(ClientCloseMode.Fin).WaitAsync(CaseTimeout);

        var closed = await serverSide.Closed.WaitAsync(CaseTimeout);
        Assert.Equal(CloseReason.PeerClosed, closed.Reason);
        Assert.Equal(0, closed.Errno);
        Assert.Equal(10_001, closed.FramesReceived); // Hello and every Move
        var ended = await WaitForLogAsync(server, 3005, client.Welcome!.SessionId);
        Assert.Contains("10001 messages handled, last move seq 10000", ended, StringComparison.Ordinal);
        AssertNoStackTraces(server);
        await server.AssertAllClosedAsync();
    }

    /// <summary>The peer's RST reached a connection the server was streaming to: <c>peer_reset</c>, errno 104.</summary>
    private static void AssertResetWhileStreaming(ConnectionClosedEvent closed)
    {
        if (TestServer.DefaultTransport == "epoll" || closed.Reason != CloseReason.PeerClosed)
        {
            Assert.Equal(CloseReason.PeerReset, closed.Reason);
            Assert.Equal(104, closed.Errno); // ECONNRESET
            return;
        }

        // Stock transport only (S4 once, S3 once, in many full runs): the kernel hands an RST's ECONNRESET to the first
        // call that meets it. When that is the stream's send, blocked on the full buffer, the receive DotNetty keeps
        // posted then reads a plain EOF, and DotNetty handles that before the failed send. The epoll transport
        // reports the error from whichever call met it (docs/CLOSE-HANDLING.md, the transport table).
        Assert.Equal(0, closed.Errno);
    }

    [Fact]
    public async Task S3_ClientProcessExitsWithoutClosing_WhileServerStreams_IsPeerReset()
    {
        await using var server = await TestServer.StartAsync(NoRateLimit);
        using var bot = BotProcess.Start(
            "--port", server.EndPoint.Port.ToString(), "--name", "s3", "--stream", "1000000", "--stream-payload", "1024",
            "--wait-stream-items", "10", "--stop-reading", "--close", "exit-without-close", "--quiet");
        await bot.WaitReadyAsync();
        Assert.Equal(0, await bot.WaitExitAsync());

        var closed = await WaitForCloseAsync(server, "s3");
        AssertResetWhileStreaming(closed);
        AssertNoStackTraces(server);
        await server.AssertAllClosedAsync();
    }

    [Fact]
    public async Task S4_KilledClient_WhileSendingAndBeingSentTo_IsClassifiedAsPeerReset()
    {
        await using var server = await TestServer.StartAsync(NoRateLimit);
        using var bot = BotProcess.Start(
            "--port", server.EndPoint.Port.ToString(), "--name", "s4", "--stream", "1000000", "--stream-payload", "1024",
            "--wait-stream-items", "10", "--flood", "--stop-reading", "--close", "silent", "--quiet",
            KilledBotTransport[0], KilledBotTransport[1]);
        await bot.WaitReadyAsync();
        var before = server.Registry.Snapshot().Single();
        var framesBeforeKill = before.FramesReceived;

        bot.Signal(9); // SIGKILL
        await bot.WaitExitAsync();

        var closed = await before.Closed.WaitAsync(CaseTimeout);
        AssertResetWhileStreaming(closed);
        Assert.True(closed.FramesReceived >= framesBeforeKill, "the flood was being received when the client died");
        AssertNoStackTraces(server);
        await server.AssertAllClosedAsync();
    }

    [Fact]
    public async Task S4_KilledBotProcess_EndsEveryConnectionItHeld_AsPeerReset()
    {
        // The load suite's SIGKILL victims: one process, several connections, all ended by the kernel at once.
        await using var server = await TestServer.StartAsync(NoRateLimit);
        using var bot = BotProcess.Start(
            "--port", server.EndPoint.Port.ToString(), "--name", "s4many", "--connections", "4", "--room", "s4many",
            "--moves", "3", "--move-interval-ms", "10", "--stop-reading", "--close", "silent", "--quiet");
        await bot.WaitReadyAsync();
        var held = server.Registry.Snapshot();
        Assert.Equal(4, held.Count);

        bot.Signal(9); // SIGKILL
        await bot.WaitExitAsync();

        var closed = await Task.WhenAll(held.Select(c => c.Closed.WaitAsync(CaseTimeout)));
        Assert.All(closed, c => Assert.Equal(CloseReason.PeerReset, c.Reason));
        Assert.All(closed, c => Assert.Equal(104, c.Errno));
        AssertNoStackTraces(server);
        await server.AssertAllClosedAsync();
    }

    [Fact]
    public async Task S5_ServerWritesAfterClientClosed_SecondWriteFailsWithBrokenPipe()
    {
        // No heartbeat: a server Ping landing right behind the last item would sit unread and make the close an RST.
        await using var server = await TestServer.StartAsync(QuietHeartbeat);
        using var wire = await Wire.ConnectAsync(server.EndPoint);
        await wire.SendAsync(new Hello(1, "s5", null));
        Assert.IsType<Welcome>(await wire.ReceiveAsync());
        var serverSide = await server.ServerSideOfAsync(wire.Socket.LocalEndPoint);

        // Items 400 ms apart: the close below must come before the next item arrives, or that item would sit unread
        // and turn the client's FIN into an RST (peer_reset); on a loaded machine 150 ms was not always enough.
        await wire.SendAsync(new StreamRequest(1000, 16, 400));
        await ReceiveAsync<StreamItem>(wire);

        // The server stops reading this connection (as it would under inbound backpressure), so it cannot see the
        // FIN while the paced stream keeps it writing. DotNetty keeps one receive posted even with AutoRead off, so
        // one more frame (answered, so we know it was read) uses it up first.
        var paused = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        serverSide.Channel.EventLoop.Execute(() =>
        {
            serverSide.Channel.Configuration.AutoRead = false;
            paused.SetResult();
        });
        await paused.Task;
        await wire.SendAsync(new Ping(777, 0));
        await ReceiveAsync<Pong>(wire, p => p.Seq == 777);
        await ReceiveAsync<StreamItem>(wire);

        // Close normally with nothing unread: the next item (first write after our FIN) draws an RST, the one
        // after it fails with EPIPE.
        await wire.CloseAfterDrainingAsync();

        var closed = await serverSide.Closed.WaitAsync(CaseTimeout);
        Assert.Equal(CloseReason.BrokenPipe, closed.Reason);
        Assert.Equal(32, closed.Errno); // EPIPE
        AssertNoStackTraces(server);
        await server.AssertAllClosedAsync();
    }

    [Fact]
    public async Task S2_ClientFin_IsAnsweredWithGoodbyeCountingEveryFrame_OnEpoll_AndWithEofOnly_OnStockSockets()
    {
        await using var server = await TestServer.StartAsync(NoRateLimit);
        using var wire = await Wire.ConnectAsync(server.EndPoint);
        await wire.SendAsync(new Hello(1, "s2fin", null));
        Assert.IsType<Welcome>(await wire.ReceiveAsync());
        var serverSide = await server.ServerSideOfAsync(wire.Socket.LocalEndPoint);
        for (var i = 1; i <= 500; i++)
        {
            await wire.SendAsync(new Move(i, i, i));
        }

        wire.Socket.Shutdown(SocketShutdown.Send); // FIN, and keep reading

        var answered = await wire.ReceiveUntilEndAsync(CaseTimeout);
        var closed = await serverSide.Closed.WaitAsync(CaseTimeout);
        Assert.Equal(CloseReason.PeerClosed, closed.Reason);
        Assert.Equal(501, closed.FramesReceived); // Hello + 500 Moves: every frame before the FIN was processed
        if (TestServer.DefaultTransport == "epoll")
        {
            // The output stayed open after the FIN: the server says how much it got, the proof nothing was lost.
            var goodbye = Assert.Single(answered.OfType<Goodbye>());
            Assert.Equal("peer_closed", goodbye.Reason);
            Assert.Equal(501, goodbye.FramesReceived);
        }
        else
        {
            // DotNetty's stock transport closes on EOF, whatever AllowHalfClosure says: no answer is possible.
            Assert.Empty(answered.OfType<Goodbye>());
        }

        AssertNoStackTraces(server);
        await server.AssertAllClosedAsync();
    }

    [Fact]
    public async Task S5_ClientClosesDuringAStream_OnEpoll_TheStreamGoesOnIntoBrokenPipe_OnStockSockets_PeerClosed()
    {
        await using var server = await TestServer.StartAsync(QuietHeartbeat);
        using var wire = await Wire.ConnectAsync(server.EndPoint);
        await wire.SendAsync(new Hello(1, "s5natural", null));
        Assert.IsType<Welcome>(await wire.ReceiveAsync());
        var serverSide = await server.ServerSideOfAsync(wire.Socket.LocalEndPoint);
        await wire.SendAsync(new StreamRequest(1000, 16, 400)); // spaced so the close below meets nothing unread
        await ReceiveAsync<StreamItem>(wire);

        // Right after an item, nothing unread: a plain close sends FIN. On epoll the server finishes the stream it
        // promised; the first item after the FIN draws an RST and the next write fails with EPIPE, with no pause
        // of reading needed (the stock transport needs one to show S5 at all).
        await wire.CloseAfterDrainingAsync();

        var closed = await serverSide.Closed.WaitAsync(CaseTimeout);
        if (TestServer.DefaultTransport == "epoll")
        {
            Assert.Equal(CloseReason.BrokenPipe, closed.Reason);
            Assert.Equal(32, closed.Errno);
        }
        else
        {
            Assert.Equal(CloseReason.PeerClosed, closed.Reason);
        }

        AssertNoStackTraces(server);
        await server.AssertAllClosedAsync();
    }

    [Fact]
    public async Task C1_ServerClosed_ClientWritesTwice_SecondWriteFailsWithEpipe_AndTheProcessSurvives()
    {
        // 1 s, not less: the test must find the connection in the registry before the server gives up on it.
        await using var server = await TestServer.StartAsync("--Server:HandshakeTimeoutMs=1000", "--Connection:DrainTimeoutMs=200");
        var client = await GameConnection.ConnectRawAsync(server.ClientOptions("c1"));
        client.PauseReading(); // not yet aware of the server's close
        var serverSide = await server.ServerSideOfAsync(client.LocalEndPoint);

        // No Hello: the server gives up at the handshake timeout, drains until its deadline and closes its socket.
        var serverClosed = await serverSide.Closed.WaitAsync(CaseTimeout);
        Assert.Equal(GameCloseReasons.HandshakeTimeout, serverClosed.Reason);

        await client.SendAsync(new Ping(1, 1)); // succeeds, and the server's kernel answers with RST
        // The epoll transport has no .NET socket: poll a non-owning one over its descriptor.
        using var borrowed = client.Channel is Transport.Epoll.EpollSocketChannel epoll
            ? new Socket(new SafeSocketHandle(epoll.FileDescriptor, ownsHandle: false))
            : null;
        var socket = borrowed ?? SocketAccess.TryGetSocket(client.Channel)!;
        Assert.True(socket.Poll(TimeSpan.FromSeconds(10), SelectMode.SelectError), "the RST arrived");

        var second = await Assert.ThrowsAnyAsync<Exception>(() => client.SendAsync(new Ping(2, 2)));
        Assert.Equal(SocketError.Shutdown, FindSocketError(second)); // EPIPE, and no SIGPIPE killed us

        var report = await client.Closed.WaitAsync(CaseTimeout);
        Assert.Equal(CloseReason.BrokenPipe, report.Reason);
        Assert.Equal(32, report.Errno);
        await server.AssertAllClosedAsync();
    }

    [Fact]
    public async Task C2_ServerSentThenClosed_ClientSendsThenReads_StillReadsEveryByteThenEof()
    {
        await using var server = await TestServer.StartAsync("--Connection:DrainTimeoutMs=200");
        using var wire = await Wire.ConnectAsync(server.EndPoint);
        await wire.SendAsync(new Hello(1, "c2", null));
        Assert.IsType<Welcome>(await wire.ReceiveAsync());
        var serverSide = await server.ServerSideOfAsync(wire.Socket.LocalEndPoint);
        await wire.SendAsync(new StreamRequest(100, 64, 0));
        await WaitUntilAsync(() => serverSide.FramesSent == 101); // Welcome and the whole stream

        // The server closes (Goodbye, FIN); the client neither reads nor answers, so the drain deadline passes and
        // the server's socket is fully closed.
        await serverSide.CloseGracefullyAsync(CloseReason.LocalClose, s => GameConnectionProtocol.CreateGoodbye(CloseReason.LocalClose, s));
        var serverClosed = await serverSide.Closed.WaitAsync(CaseTimeout);

        // One more message: it is delivered to a closed socket and draws an RST.
        await wire.SendAsync(new Ping(1, 1));
        Assert.True(wire.Socket.Poll(TimeSpan.FromSeconds(10), SelectMode.SelectError), "the RST arrived");

        // Linux still hands over every byte the server sent, then a normal end of stream.
        var messages = await wire.ReceiveUntilEndAsync();
        Assert.Equal(100, messages.OfType<StreamItem>().Count());
        Assert.Equal(Enumerable.Range(0, 100), messages.OfType<StreamItem>().Select(i => i.Index));
        var goodbye = Assert.IsType<Goodbye>(messages[^1]);
        Assert.Equal("local_close", goodbye.Reason);
        Assert.Equal(serverClosed.FramesSent, messages.Count + 1); // + Welcome
        await server.AssertAllClosedAsync();
    }

    [Fact]
    public async Task C3_ServerShutsDownWhileClientFloods_ClientReadsGoodbyeThenEof_NeverAReset()
    {
        var server = await TestServer.StartAsync(NoRateLimit);
        await using var client = await GameConnection.ConnectAsync(server.ClientOptions("c3"));
        var serverSide = await server.ServerSideOfAsync(client.LocalEndPoint);
        using var stop = new CancellationTokenSource();
        var flood = Task.Run(async () =>
        {
            long seq = 0;
            while (!stop.IsCancellationRequested && client.Channel.Active)
            {
                try
                {
                    await client.SendAsync(new Move(++seq, 1, 1));
                }
                catch (Exception ex) when (ex is not OutOfMemoryException)
                {
                    break; // the connection has ended; the report says how
                }
            }
        });

        // Let the flood get going, then stop the host while it runs.
        await WaitUntilAsync(() => serverSide.FramesReceived >= 1000);

        await server.StopAsync();
        var report = await client.Closed.WaitAsync(CaseTimeout);
        await stop.CancelAsync();
        await flood.WaitAsync(CaseTimeout);

        Assert.True(report.ServerGoodbye is not null, $"no Goodbye before the end: {report}");
        Assert.Equal("server_shutdown", report.ServerGoodbye!.Reason);
        Assert.Equal(CloseReason.PeerClosed, report.Reason); // EOF after the Goodbye, not 104
        Assert.Equal(0, report.Errno);
        var serverClosed = await serverSide.Closed.WaitAsync(CaseTimeout);
        Assert.Equal(CloseReason.ServerShutdown, serverClosed.Reason);
        Assert.Equal(serverClosed.FramesSent, report.FramesReceived); // nothing the server sent was lost
        await server.DisposeAsync();
    }

    [Fact]
    public async Task AbortBeforeHello_IsPeerReset()
    {
        await using var server = await TestServer.StartAsync();
        var client = await GameConnection.ConnectRawAsync(server.ClientOptions());
        var serverSide = await server.ServerSideOfAsync(client.LocalEndPoint);
        await client.CloseAsync(ClientCloseMode.Abort).WaitAsync(CaseTimeout);

        var closed = await serverSide.Closed.WaitAsync(CaseTimeout);
        Assert.Equal(CloseReason.PeerReset, closed.Reason);
        Assert.Equal(104, closed.Errno);
        Assert.Equal(0, closed.FramesReceived);
        AssertNoStackTraces(server);
        await server.AssertAllClosedAsync();
    }

    [Fact]
    public async Task TruncatedFrameThenFin_IsPeerClosed_AndThePartialFrameIsNotProcessed()
    {
        await using var server = await TestServer.StartAsync();
        using var wire = await Wire.ConnectAsync(server.EndPoint);
        await wire.SendAsync(new Hello(1, "trunc", null));
        Assert.IsType<Welcome>(await wire.ReceiveAsync());
        var serverSide = await server.ServerSideOfAsync(wire.Socket.LocalEndPoint);
        var echo = Wire.Frame(new Echo(1, new byte[100]));
        await wire.SendRawAsync(echo[..50]);
        wire.Socket.Shutdown(SocketShutdown.Send);

        var closed = await serverSide.Closed.WaitAsync(CaseTimeout);
        Assert.Equal(CloseReason.PeerClosed, closed.Reason);
        Assert.Equal(1, closed.FramesReceived); // Hello only
        Assert.Equal(Wire.Frame(new Hello(1, "trunc", null)).Length + 50, closed.BytesReceived);
        await server.AssertAllClosedAsync();
    }

    [Fact]
    public async Task GoodbyeHandshake_ClientLeaves_BothCountsMatch()
    {
        await using var server = await TestServer.StartAsync();
        var client = await GameConnection.ConnectAsync(server.ClientOptions());
        var serverSide = await server.ServerSideOfAsync(client.LocalEndPoint);
        for (var i = 0; i < 100; i++)
        {
            await client.SendAsync(new Echo(i, [1]));
        }

        var goodbye = await client.GoodbyeAsync("quit");
        var report = await client.Closed.WaitAsync(CaseTimeout);
        var closed = await serverSide.Closed.WaitAsync(CaseTimeout);

        Assert.Equal(client.FramesSent, goodbye.FramesReceived);
        Assert.Equal(102, goodbye.FramesReceived); // Hello, 100 Echoes, Goodbye
        Assert.Equal(GameCloseReasons.ClientGoodbye, closed.Reason);
        Assert.Equal(closed.FramesSent, report.FramesReceived); // Welcome, 100 Echoes, the server's Goodbye
        Assert.Equal(102, report.FramesReceived);
        await server.AssertAllClosedAsync();
    }

    [Fact]
    public async Task Kick_Abortive_ClientSeesResetAtOnce()
    {
        await using var server = await TestServer.StartAsync();
        var client = await GameConnection.ConnectAsync(server.ClientOptions());
        var serverSide = await server.ServerSideOfAsync(client.LocalEndPoint);
        await serverSide.AbortAsync(CloseReason.Aborted);

        var report = await client.Closed.WaitAsync(CaseTimeout);
        Assert.Equal(CloseReason.PeerReset, report.Reason);
        Assert.Equal(104, report.Errno);
        Assert.Equal(CloseReason.Aborted, (await serverSide.Closed.WaitAsync(CaseTimeout)).Reason);
        await server.AssertAllClosedAsync();
    }

    [Fact]
    public async Task Kick_Graceful_ClientGetsGoodbyeThenEof()
    {
        await using var server = await TestServer.StartAsync();
        var client = await GameConnection.ConnectAsync(server.ClientOptions());
        var serverSide = await server.ServerSideOfAsync(client.LocalEndPoint);
        _ = serverSide.CloseGracefullyAsync(CloseReason.LocalClose, s => new Goodbye("kicked_gracefully", s.FramesReceived));

        var report = await client.Closed.WaitAsync(CaseTimeout);
        Assert.Equal(CloseReason.PeerClosed, report.Reason);
        Assert.Equal("kicked_gracefully", report.ServerGoodbye?.Reason);
        var closed = await serverSide.Closed.WaitAsync(CaseTimeout);
        Assert.Equal(CloseReason.LocalClose, closed.Reason);
        Assert.Equal(2, closed.PeerFramesReceived); // the client's answer counted Welcome and Goodbye
        await server.AssertAllClosedAsync();
    }

    [Fact]
    public async Task GracefulCloseOntoAFullSocket_ThePeersFinMidFlush_OnEpoll_StillDeliversEveryQueuedItemAndTheGoodbye()
    {
        await using var server = await TestServer.StartAsync(QuietHeartbeat);
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { ReceiveBufferSize = 32 * 1024 };
        await socket.ConnectAsync(server.EndPoint);
        using var wire = new Wire(socket);
        await wire.SendAsync(new Hello(1, "full", null));
        Assert.IsType<Welcome>(await wire.ReceiveAsync());
        var serverSide = await server.ServerSideOfAsync(socket.LocalEndPoint);

        // A stream the client does not read: the kernel's buffers fill, then the channel's queue, and it pauses. It is
        // stuck once the channel stays unwritable with nothing more handed to it for a while: the queue no longer
        // drains into the kernel (a queue that drained would make the channel writable and the stream go on).
        await wire.SendAsync(new StreamRequest(100_000, 1000, 0));
        var deadline = DateTime.UtcNow + CaseTimeout;
        for (var sent = -1L; sent != serverSide.BytesSent || serverSide.Channel.IsWritable;)
        {
            Assert.True(DateTime.UtcNow < deadline, "the server's output never stalled");
            sent = serverSide.BytesSent;
            await Task.Delay(200);
        }

        // The server closes gracefully: its Goodbye waits behind everything queued. Then the peer's FIN arrives while
        // that flush is still pending (the client has not read a byte of the stream yet).
        var closing = serverSide.CloseGracefullyAsync(CloseReason.LocalClose, c => GameConnectionProtocol.CreateGoodbye(CloseReason.LocalClose, c));
        await WaitUntilAsync(() => serverSide.Phase != ConnectionPhase.Open);
        socket.Shutdown(SocketShutdown.Send);
        await WaitUntilAsync(() => serverSide.Channel is IDuplexChannel { IsInputShutdown: true } || !serverSide.Channel.Open);

        var received = new List<IMessage>();
        var cutMidFrame = false;
        try
        {
            while (await wire.ReceiveAsync() is { } message)
            {
                received.Add(message);
            }
        }
        catch (EndOfStreamException)
        {
            cutMidFrame = true;
        }

        var closed = await closing.WaitAsync(CaseTimeout);
        Assert.Equal(CloseReason.LocalClose, closed.Reason);
        var items = received.OfType<StreamItem>().Select(i => i.Index).ToList();
        Assert.Equal(Enumerable.Range(0, items.Count), items); // whatever arrived whole arrived in order
        if (TestServer.DefaultTransport == "epoll")
        {
            // Half-closure keeps the output open: every item queued before the close, then the Goodbye, then FIN.
            Assert.False(cutMidFrame, "the stream was cut inside a frame");
            Assert.IsType<Goodbye>(received[^1]);
            Assert.Equal(closed.FramesSent, received.Count + 1); // Welcome, the items, the Goodbye
        }

        // DotNetty's stock channel closes as soon as it reads the FIN, whatever is queued (docs/CLOSE-HANDLING.md):
        // the client gets what the kernel already had, possibly ending inside a frame, and no Goodbye.
        await server.AssertAllClosedAsync();
    }

    /// <summary>Reads until a message of type <typeparamref name="T"/> arrives, skipping others (heartbeat Pings, items).</summary>
    private static async Task<T> ReceiveAsync<T>(Wire wire, Func<T, bool>? match = null)
        where T : class, IMessage
    {
        while (true)
        {
            var message = await wire.ReceiveAsync() ?? throw new EndOfStreamException($"end of stream before a {typeof(T).Name}");
            if (message is T wanted && (match is null || match(wanted)))
            {
                return wanted;
            }
        }
    }

    private static async Task WaitUntilAsync(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow + CaseTimeout;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "condition not met in time");
            await Task.Delay(10);
        }
    }

    private static SocketError? FindSocketError(Exception? ex)
    {
        for (; ex is not null; ex = ex.InnerException)
        {
            if (ex is SocketException socketException)
            {
                return socketException.SocketErrorCode;
            }
        }

        return null;
    }

    private static async Task<ConnectionClosedEvent> WaitForCloseAsync(TestServer server, string playerName)
    {
        var deadline = DateTime.UtcNow + CaseTimeout;
        while (DateTime.UtcNow < deadline)
        {
            var started = server.Logs.Entries.FirstOrDefault(e => e.EventId.Id == 3001 && e.Message.Contains($"for {playerName} on connection", StringComparison.Ordinal));
            if (started is not null)
            {
                var connectionId = started.Message[(started.Message.LastIndexOf(' ') + 1)..];
                var state = server.Registry.Snapshot().FirstOrDefault(c => c.Id == connectionId);
                if (state is not null)
                {
                    return await state.Closed.WaitAsync(CaseTimeout);
                }

                var line = server.Logs.Entries.FirstOrDefault(e => e.EventId.Id == 1001 && e.Message.StartsWith($"Connection {connectionId} ", StringComparison.Ordinal));
                if (line is not null)
                {
                    return ParseCloseLine(line.Message, connectionId);
                }
            }

            await Task.Delay(20);
        }

        throw new TimeoutException($"no close of {playerName}");
    }

    private static ConnectionClosedEvent ParseCloseLine(string message, string connectionId)
    {
        // "... closed: peer_reset (errno 104: Connection reset by peer) after ..."
        var reasonStart = message.IndexOf("closed: ", StringComparison.Ordinal) + 8;
        var reasonName = message[reasonStart..message.IndexOf(' ', reasonStart)];
        Assert.True(GameCloseReasons.TryParse(reasonName, out var reason), $"unknown close reason {reasonName}");
        var errnoStart = message.IndexOf("(errno ", StringComparison.Ordinal) + 7;
        var errnoText = message[errnoStart..message.IndexOfAny([':', ')'], errnoStart)];
        var errno = int.TryParse(errnoText, out var e) ? e : 0;
        return new ConnectionClosedEvent(connectionId, "-", reason, errno, null, TimeSpan.Zero, 0, 0, 0, 0, null);
    }

    private static async Task<string> WaitForLogAsync(TestServer server, int eventId, string contains)
    {
        var deadline = DateTime.UtcNow + CaseTimeout;
        while (DateTime.UtcNow < deadline)
        {
            var entry = server.Logs.Entries.FirstOrDefault(e => e.EventId.Id == eventId && e.Message.Contains(contains, StringComparison.Ordinal));
            if (entry is not null)
            {
                return entry.Message;
            }

            await Task.Delay(20);
        }

        throw new TimeoutException($"no log {eventId} containing {contains}");
    }

    /// <summary>A peer leaving in any normal way is not an error and prints no stack trace.</summary>
    private static void AssertNoStackTraces(TestServer server) =>
        Assert.All(server.Logs.Entries, e =>
        {
            Assert.Null(e.Exception);
            Assert.True(e.Level < Microsoft.Extensions.Logging.LogLevel.Error, e.Message);
        });
}
