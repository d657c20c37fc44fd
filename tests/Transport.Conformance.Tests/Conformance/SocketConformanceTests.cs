using System.Net;
using System.Net.Sockets;
using DotNetty.Buffers;
using DotNetty.Common;
using DotNetty.Common.Utilities;
using DotNetty.Transport.Channels;
using DotNetty.Transport.Channels.Sockets;
using TcpConnections;
using Transport.Epoll;

using TaskCompletionSource = System.Threading.Tasks.TaskCompletionSource;

namespace Transport.Conformance.Tests.Conformance;

/// <summary>
/// One socket suite for every transport, in the manner of Netty's testsuite module: each case runs on DotNetty's stock
/// sockets and on the epoll transport, with the transport as the server (a plain .NET socket as its peer) and, where
/// the behaviour is the client's too, as the client. Where the two differ by design the case says so for that
/// transport, in <see cref="ByDesign"/>; every other difference fails.
/// </summary>
public sealed class SocketConformanceTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    public static TheoryData<TransportKind, Side> TransportsAndSides() => new()
    {
        { TransportKind.Sockets, Side.Server },
        { TransportKind.Sockets, Side.Client },
        { TransportKind.Epoll, Side.Server },
        { TransportKind.Epoll, Side.Client },
    };

    public static TheoryData<TransportKind> Transports() => new() { TransportKind.Sockets, TransportKind.Epoll };

    [Theory]
    [MemberData(nameof(TransportsAndSides))]
    public async Task Echo_OfRandomSizes_SplitAndGatheredEveryWay_ComesBackByteForByte(TransportKind kind, Side side)
    {
        // The echo splits what it reads into random pieces, writes some from its loop and some from other threads,
        // and flushes at random: every gathering and every partial write the transport can make, checked byte by byte.
        const int Seed = 11;
        const int Total = 4 << 20;
        await using var loops = TransportLoops.Create(kind, workerLoops: 2);
        await using var pair = await ChannelPair.OpenAsync(loops, side, ch => ch.Pipeline.AddLast(new SplittingEcho(Seed)));
        var payload = new byte[Total];
        new Random(Seed).NextBytes(payload);

        var sending = Task.Run(async () =>
        {
            var random = new Random(Seed + 1);
            for (var offset = 0; offset < Total;)
            {
                var size = Math.Min(Total - offset, random.Next(1, 70_000));
                await pair.Peer.SendAsync(payload.AsMemory(offset, size));
                offset += size;
            }
        });
        var received = await pair.ReceiveExactlyAsync(Total);
        await sending.WaitAsync(Timeout);
        AssertSameBytes(payload, received);
    }

    [Theory]
    [MemberData(nameof(TransportsAndSides))]
    public async Task PeerFin_WithHalfClosureAllowed_LeavesTheOutputOpen_OnTransportsThatCanHalfClose(TransportKind kind, Side side)
    {
        await using var loops = TransportLoops.Create(kind, workerLoops: 1);
        var events = new EventRecorder();
        await using var pair = await ChannelPair.OpenAsync(loops, side, ch => ch.Pipeline.AddLast(events), halfClosure: true);

        pair.Peer.Shutdown(SocketShutdown.Send);

        if (ByDesign.StockClosesOnEof(kind))
        {
            // DotNetty 0.7.6's socket channel closes on EOF whatever AllowHalfClosure says: no event, the channel is gone.
            await pair.Channel.CloseCompletion.WaitAsync(Timeout);
            Assert.Equal(0, await pair.Peer.ReceiveAsync(new byte[1]).WaitAsync(Timeout));
            return;
        }

        await events.InputShutdown.WaitAsync(Timeout);
        Assert.True(pair.Channel.Open);
        await pair.Channel.WriteAndFlushAsync(Unpooled.WrappedBuffer("after your FIN"u8.ToArray())).WaitAsync(Timeout);
        Assert.Equal("after your FIN", System.Text.Encoding.ASCII.GetString(await pair.ReceiveExactlyAsync(14)));
    }

    [Theory]
    [MemberData(nameof(TransportsAndSides))]
    public async Task PeerFin_WithoutHalfClosure_ClosesTheChannel_AndThePeerReadsOurFin(TransportKind kind, Side side)
    {
        await using var loops = TransportLoops.Create(kind, workerLoops: 1);
        var events = new EventRecorder();
        await using var pair = await ChannelPair.OpenAsync(loops, side, ch => ch.Pipeline.AddLast(events));

        pair.Peer.Shutdown(SocketShutdown.Send);

        await events.Inactive.WaitAsync(Timeout);
        Assert.Equal(0, await pair.Peer.ReceiveAsync(new byte[1]).WaitAsync(Timeout));
        Assert.Null(events.Error);
    }

    [Theory]
    [MemberData(nameof(TransportsAndSides))]
    public async Task ShutdownOutput_SendsFin_AndTheChannelReadsOn_OnTransportsThatCanHalfClose(TransportKind kind, Side side)
    {
        await using var loops = TransportLoops.Create(kind, workerLoops: 1);
        var events = new EventRecorder();
        await using var pair = await ChannelPair.OpenAsync(loops, side, ch => ch.Pipeline.AddLast(events), halfClosure: true);

        if (pair.Channel is not IDuplexChannel duplex)
        {
            // By design: the stock channel has no half-close of its own (.NET's Shutdown(Send) makes DotNetty read the
            // next bytes as EOF); the project's handlers use shutdown(2) on its socket instead (SocketAccess).
            Assert.True(ByDesign.StockHasNoHalfClose(kind), "only the stock transport may lack IDuplexChannel");
            return;
        }

        await pair.Channel.WriteAndFlushAsync(Unpooled.WrappedBuffer("last words"u8.ToArray())).WaitAsync(Timeout);
        await duplex.ShutdownOutputAsync().WaitAsync(Timeout);
        Assert.True(duplex.IsOutputShutdown);
        Assert.Equal("last words", System.Text.Encoding.ASCII.GetString(await pair.ReceiveExactlyAsync(10)));
        Assert.Equal(0, await pair.Peer.ReceiveAsync(new byte[1]).WaitAsync(Timeout)); // then our FIN

        pair.Peer.Send("answer"u8);
        Assert.Equal("answer", await events.NextTextAsync(6));
        var late = Unpooled.WrappedBuffer(new byte[4]);
        await Assert.ThrowsAsync<ChannelOutputShutdownException>(() => pair.Channel.WriteAndFlushAsync(late).WaitAsync(Timeout));
        Assert.True(pair.Channel.Open);
    }

    [Theory]
    [MemberData(nameof(TransportsAndSides))]
    public async Task PeerReset_ReachesExceptionCaught_AsConnectionReset_Errno104(TransportKind kind, Side side)
    {
        await using var loops = TransportLoops.Create(kind, workerLoops: 1);
        var events = new EventRecorder();
        await using var pair = await ChannelPair.OpenAsync(loops, side, ch => ch.Pipeline.AddLast(events));

        pair.Peer.LingerState = new LingerOption(true, 0);
        pair.Peer.Close(); // RST

        var error = await events.ErrorAsync(Timeout);
        var socketError = FindSocketException(error);
        Assert.NotNull(socketError);
        Assert.Equal(SocketError.ConnectionReset, socketError.SocketErrorCode);
        Assert.Equal(104, Errno(socketError));
        await events.Inactive.WaitAsync(Timeout);
    }

    [Theory]
    [MemberData(nameof(TransportsAndSides))]
    public async Task WritesAfterThePeerClosed_FailWithBrokenPipe_Errno32(TransportKind kind, Side side)
    {
        await using var loops = TransportLoops.Create(kind, workerLoops: 1);
        var events = new EventRecorder();

        // Not reading: the channel must not see the FIN, so it goes on writing into the closed peer.
        await using var pair = await ChannelPair.OpenAsync(loops, side, ch => ch.Pipeline.AddLast(events), autoRead: false);
        pair.Peer.Close(); // FIN; the first write after it draws an RST, a later one fails with EPIPE

        SocketException? writeError = null;
        for (var i = 0; i < 100 && writeError is null; i++)
        {
            try
            {
                await pair.Channel.WriteAndFlushAsync(Unpooled.WrappedBuffer(new byte[64])).WaitAsync(Timeout);
                await Task.Delay(10);
            }
            catch (Exception ex) when (FindSocketException(ex) is { } socketException)
            {
                writeError = socketException;
            }
        }

        Assert.NotNull(writeError);
        Assert.Equal(SocketError.Shutdown, writeError.SocketErrorCode);
        Assert.Equal(32, Errno(writeError));
        await pair.Channel.CloseCompletion.WaitAsync(Timeout);
        if (ByDesign.StockKeepsWriteErrorsFromThePipeline(kind))
        {
            Assert.Null(events.Error);
        }
        else
        {
            Assert.Equal(32, Errno(FindSocketException(await events.ErrorAsync(Timeout))!));
        }
    }

    [Theory]
    [MemberData(nameof(TransportsAndSides))]
    public async Task LingerZero_ThenClose_ResetsThePeer(TransportKind kind, Side side)
    {
        await using var loops = TransportLoops.Create(kind, workerLoops: 1);
        await using var pair = await ChannelPair.OpenAsync(loops, side, _ => { });
        pair.Channel.Configuration.SetOption(ChannelOption.SoLinger, 0);

        await pair.Channel.CloseAsync().WaitAsync(Timeout);

        if (ByDesign.StockSendsFinBeforeReset(kind))
        {
            // DotNetty 0.7.6's DoClose calls Shutdown(Both) before closing: the peer reads our FIN first, and only a
            // write of its own meets the reset. The project aborts through the socket itself (SocketAccess.TryAbort).
            Assert.Equal(0, await pair.Peer.ReceiveAsync(new byte[1]).WaitAsync(Timeout));
            return;
        }

        var error = await Assert.ThrowsAsync<SocketException>(() => pair.Peer.ReceiveAsync(new byte[1]).WaitAsync(Timeout));
        Assert.Equal(SocketError.ConnectionReset, error.SocketErrorCode);
    }

    [Theory]
    [MemberData(nameof(TransportsAndSides))]
    public async Task AutoReadToggledAtRandom_LosesAndReordersNothing(TransportKind kind, Side side)
    {
        const int Total = 2 << 20;
        await using var loops = TransportLoops.Create(kind, workerLoops: 1);
        var collected = new Collector(Total);
        await using var pair = await ChannelPair.OpenAsync(loops, side, ch => ch.Pipeline.AddLast(collected));
        var payload = new byte[Total];
        new Random(5).NextBytes(payload);

        using var stop = new CancellationTokenSource();
        var toggling = Task.Run(async () =>
        {
            var random = new Random(6);
            while (!stop.IsCancellationRequested)
            {
                pair.Channel.Configuration.AutoRead = random.Next(2) == 0;
                if (pair.Channel.Configuration.AutoRead)
                {
                    pair.Channel.Read();
                }

                await Task.Delay(random.Next(0, 3));
            }

            pair.Channel.Configuration.AutoRead = true;
            pair.Channel.Read();
        });
        var sending = pair.Peer.SendAsync(payload);
        await sending.WaitAsync(Timeout);
        await Task.Delay(50);
        await stop.CancelAsync();
        await toggling.WaitAsync(Timeout);

        AssertSameBytes(payload, await collected.Done.WaitAsync(Timeout));
    }

    [Theory]
    [MemberData(nameof(TransportsAndSides))]
    public async Task Writability_FollowsTheWaterMarks_BothWays(TransportKind kind, Side side)
    {
        const int High = 64 * 1024;
        const int Low = 16 * 1024;
        await using var loops = TransportLoops.Create(kind, workerLoops: 1);
        var events = new EventRecorder();
        await using var pair = await ChannelPair.OpenAsync(loops, side, ch =>
        {
            ch.Configuration.WriteBufferHighWaterMark = High;
            ch.Configuration.WriteBufferLowWaterMark = Low;
            ch.Pipeline.AddLast(events);
        }, peerReceiveBuffer: 4096);

        var written = await pair.Channel.EventLoop.SubmitAsync(() =>
        {
            long bytes = 0;
            while (pair.Channel.IsWritable && bytes < 256L << 20)
            {
                _ = pair.Channel.WriteAndFlushAsync(Unpooled.WrappedBuffer(new byte[8192]));
                bytes += 8192;
            }

            return bytes;
        }).WaitAsync(Timeout);
        Assert.False(pair.Channel.IsWritable);
        await events.Unwritable.WaitAsync(Timeout);

        // The peer reads everything: the backlog drains below the low mark and the channel says so.
        var drained = await pair.ReceiveExactlyAsync((int)written);
        Assert.Equal(written, drained.Length);
        await events.WritableAgain.WaitAsync(Timeout);
        Assert.True(pair.Channel.IsWritable);
    }

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task Connect_ToAClosedPort_IsRefused_Errno111_AndTheChannelCloses(TransportKind kind)
    {
        await using var loops = TransportLoops.Create(kind, workerLoops: 1);
        var port = FreePort();
        var made = new ChannelCatcher();
        var error = await Assert.ThrowsAnyAsync<Exception>(() =>
            loops.ClientBootstrap().Handler(made).ConnectAsync(new IPEndPoint(IPAddress.Loopback, port)).WaitAsync(Timeout));

        var socketError = FindSocketException(error);
        Assert.NotNull(socketError);
        Assert.Equal(SocketError.ConnectionRefused, socketError.SocketErrorCode);
        Assert.Equal(111, Errno(socketError));
        if (ByDesign.StockMayLeaveARefusedConnectOpen(kind) && await made.IsOpenAsync())
        {
            // The caller has to close it (GameConnection does), or its socket stays open.
            await made.CloseAsync();
        }

        await made.AssertClosedAsync();
    }

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task Connect_ThatFailsAtOnce_FailsWithTheErrno_AndLeavesNoChannelOpen(TransportKind kind)
    {
        // TCP to a multicast address fails inside connect() itself (ENETUNREACH): no packet leaves the machine.
        await using var loops = TransportLoops.Create(kind, workerLoops: 1);
        var made = new ChannelCatcher();
        var bootstrap = loops.ClientBootstrap().Handler(made);
        var error = await Assert.ThrowsAnyAsync<Exception>(() => bootstrap.ConnectAsync(new IPEndPoint(IPAddress.Parse("224.0.0.1"), 9)).WaitAsync(Timeout));

        var socketError = FindSocketException(error);
        Assert.NotNull(socketError);
        Assert.Equal(101, Errno(socketError));
        await made.AssertClosedAsync();
    }

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task Connect_ToAListenerThatNeverAnswers_TimesOut_AndTheChannelCloses(TransportKind kind)
    {
        // A listener whose accept queue is full drops further SYNs: the connect waits until its own timeout.
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(0);
        var fillers = new List<Socket>();
        try
        {
            for (var i = 0; i < 4; i++)
            {
                var filler = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                fillers.Add(filler);
                _ = filler.ConnectAsync(listener.LocalEndPoint!);
            }

            await Task.Delay(200); // the fillers' handshakes settle into the (full) queue
            await using var loops = TransportLoops.Create(kind, workerLoops: 1);
            var made = new ChannelCatcher();
            var bootstrap = loops.ClientBootstrap()
                .Option(ChannelOption.ConnectTimeout, TimeSpan.FromMilliseconds(500))
                .Handler(made);
            var started = DateTime.UtcNow;
            var error = await Assert.ThrowsAnyAsync<Exception>(() => bootstrap.ConnectAsync(listener.LocalEndPoint!).WaitAsync(Timeout));
            Assert.IsType<ConnectTimeoutException>(error);
            Assert.InRange(DateTime.UtcNow - started, TimeSpan.FromMilliseconds(400), TimeSpan.FromSeconds(10));
            await made.AssertClosedAsync();
        }
        finally
        {
            fillers.ForEach(f => f.Dispose());
        }
    }

    [Theory]
    [MemberData(nameof(TransportsAndSides))]
    public async Task Echo_OverIPv6Loopback_Works(TransportKind kind, Side side)
    {
        if (!Socket.OSSupportsIPv6 || !CanBindIPv6Loopback())
        {
            Assert.Fail("IPv6 loopback (::1) is not available on this machine; the case needs it");
        }

        await using var loops = TransportLoops.Create(kind, workerLoops: 1);
        await using var pair = await ChannelPair.OpenAsync(loops, side, ch => ch.Pipeline.AddLast(new SplittingEcho(3)), address: IPAddress.IPv6Loopback);
        Assert.Equal(AddressFamily.InterNetworkV6, ((IPEndPoint)pair.Channel.RemoteAddress).AddressFamily);
        var payload = new byte[100_000];
        new Random(3).NextBytes(payload);
        await pair.Peer.SendAsync(payload);
        AssertSameBytes(payload, await pair.ReceiveExactlyAsync(payload.Length));
    }

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task ManyChannelsOnOneLoop_EachGetsExactlyItsOwnBytes(TransportKind kind)
    {
        // Readers with small windows that stall now and then: the echo's sockets fill, so writes meet EAGAIN and wait
        // for EPOLLOUT while the other channels of the loop write on.
        const int Connections = 100;
        const int PerConnection = 256 * 1024;
        const int SmallSendBuffer = 8192;
        await using var loops = TransportLoops.Create(kind, workerLoops: 1);
        var server = await loops.ListenAsync(b => b
            .ChildOption(ChannelOption.SoSndbuf, SmallSendBuffer) // the kernel would otherwise take each echo whole
            .ChildHandler(new ActionChannelInitializer<IChannel>(ch => ch.Pipeline.AddLast(new SplittingEcho(ch.GetHashCode())))));
        try
        {
            var peers = await Task.WhenAll(Enumerable.Range(0, Connections).Select(async i =>
            {
                var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { ReceiveBufferSize = 2048 + (i * 997 % 16384) };
                await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, ((IPEndPoint)server.LocalAddress).Port)).WaitAsync(Timeout);
                return socket;
            }));
            await Task.WhenAll(peers.Select(async (socket, i) =>
            {
                var payload = new byte[PerConnection];
                new Random(i).NextBytes(payload);
                var sending = socket.SendAsync(payload);
                var received = await ReceiveWithPausesAsync(socket, PerConnection, new Random(i));
                await sending.WaitAsync(Timeout);
                AssertSameBytes(payload, received, $"connection {i}");
                socket.Dispose();
            })).WaitAsync(Timeout * 2);
        }
        finally
        {
            await server.CloseAsync();
        }
    }

    [Theory]
    [MemberData(nameof(TransportsAndSides))]
    public async Task CompositeAndSlicedBuffers_AreSentWhole_AndInOrder(TransportKind kind, Side side)
    {
        // A composite of many components takes several iovecs, a gather can stop inside one, and slices share memory.
        // Small windows make most composites go out in parts; under paranoid leak detection every composite is
        // DotNetty's leak-aware wrapper, whose parameterless GetIoBuffers ignores the reader index (DotNetty 0.7.6):
        // a transport that relies on it sends a partly written composite's start again.
        var level = ResourceLeakDetector.Level;
        ResourceLeakDetector.Level = ResourceLeakDetector.DetectionLevel.Paranoid;
        using var restore = new Restore(() => ResourceLeakDetector.Level = level);
        await using var loops = TransportLoops.Create(kind, workerLoops: 1);
        await using var pair = await ChannelPair.OpenAsync(loops, side, ch => ch.Configuration.SetOption(ChannelOption.SoSndbuf, 8192), peerReceiveBuffer: 4096);
        var payload = new byte[3 << 20];
        new Random(13).NextBytes(payload);

        await pair.Channel.EventLoop.SubmitAsync(() =>
        {
            var random = new Random(14);
            for (var offset = 0; offset < payload.Length;)
            {
                var composite = pair.Channel.Allocator.CompositeBuffer(256);
                for (var c = 0; c < random.Next(1, 200) && offset < payload.Length; c++)
                {
                    var size = Math.Min(payload.Length - offset, random.Next(1, 3000));
                    composite.AddComponent(true, Unpooled.WrappedBuffer(payload, offset, size));
                    offset += size;
                }

                _ = pair.Channel.WriteAsync(composite);
                if (random.Next(5) == 0)
                {
                    pair.Channel.Flush();
                }
            }

            pair.Channel.Flush();
            return 0;
        }).WaitAsync(Timeout);

        AssertSameBytes(payload, await pair.ReceiveExactlyAsync(payload.Length));
    }

    [Theory]
    [MemberData(nameof(TransportsAndSides))]
    public async Task WriteAndFlush_ThenClose_DeliversEveryByte_ThenFin(TransportKind kind, Side side)
    {
        await using var loops = TransportLoops.Create(kind, workerLoops: 1);
        await using var pair = await ChannelPair.OpenAsync(loops, side, _ => { });
        var payload = new byte[1 << 20];
        new Random(9).NextBytes(payload);

        await pair.Channel.EventLoop.SubmitAsync(() =>
        {
            _ = pair.Channel.WriteAndFlushAsync(Unpooled.WrappedBuffer(payload));
            _ = pair.Channel.CloseAsync();
            return 0;
        }).WaitAsync(Timeout);

        AssertSameBytes(payload, await pair.ReceiveExactlyAsync(payload.Length));
        Assert.Equal(0, await pair.Peer.ReceiveAsync(new byte[1]).WaitAsync(Timeout));
    }

    internal static SocketException? FindSocketException(Exception? exception)
    {
        for (var e = exception; e is not null; e = e.InnerException)
        {
            if (e is SocketException socketException)
            {
                return socketException;
            }

            if (e is AggregateException { InnerExceptions.Count: 1 } aggregate)
            {
                return FindSocketException(aggregate.InnerExceptions[0]);
            }
        }

        return null;
    }

    // The epoll transport keeps the exact errno; .NET's own SocketException rebuilds it from the SocketError, which
    // gives the same number for every errno these cases meet.
    private static int Errno(SocketException exception) => exception is EpollSocketException epoll ? epoll.Errno : exception.NativeErrorCode;

    private static void AssertSameBytes(byte[] expected, byte[] actual, string what = "the stream")
    {
        Assert.Equal(expected.Length, actual.Length);
        var at = expected.AsSpan().CommonPrefixLength(actual);
        Assert.True(at == expected.Length, $"{what}: first difference at byte {at} of {expected.Length}{WhereFrom(expected, actual, at)}");
    }

    // Where the first wrong bytes came from: a skip or a repeat shows as an offset of the expected stream.
    private static string WhereFrom(byte[] expected, byte[] actual, int at)
    {
        const int Probe = 32;
        if (at >= actual.Length || actual.Length - at < Probe)
        {
            return string.Empty;
        }

        var found = expected.AsSpan().IndexOf(actual.AsSpan(at, Probe));
        return found < 0 ? "; the bytes there are from nowhere in the expected stream" : $"; the bytes there are expected bytes from offset {found} ({found - at:+#;-#;0})";
    }

    private static async Task<byte[]> ReceiveWithPausesAsync(Socket socket, int count, Random random)
    {
        var buffer = new byte[count];
        var offset = 0;
        while (offset < count)
        {
            var read = await socket.ReceiveAsync(buffer.AsMemory(offset, Math.Min(count - offset, 4096))).AsTask().WaitAsync(Timeout);
            if (read == 0)
            {
                throw new InvalidOperationException($"end of stream after {offset} of {count} bytes");
            }

            offset += read;
            if (random.Next(16) == 0)
            {
                await Task.Delay(random.Next(5, 30));
            }
        }

        return buffer;
    }

    private static int FreePort()
    {
        using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        probe.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)probe.LocalEndPoint!).Port;
    }

    private static bool CanBindIPv6Loopback()
    {
        try
        {
            using var probe = new Socket(AddressFamily.InterNetworkV6, SocketType.Stream, ProtocolType.Tcp);
            probe.Bind(new IPEndPoint(IPAddress.IPv6Loopback, 0));
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    /// <summary>
    /// Echoes what it reads, cut into random pieces, written from the loop or from the thread pool, flushed at random.
    /// Order holds: while pieces handed to the pool have not reached the channel, later pieces follow them there.
    /// </summary>
    private sealed class SplittingEcho(int seed) : ChannelHandlerAdapter
    {
        private readonly Random random = new(seed);
        private Task offLoop = Task.CompletedTask;
        private int offLoopPending; // loop thread only

        public override void ChannelRead(IChannelHandlerContext context, object message)
        {
            var buffer = (IByteBuffer)message;
            var pieces = new List<IByteBuffer>();
            while (buffer.IsReadable())
            {
                pieces.Add(buffer.ReadRetainedSlice(Math.Min(buffer.ReadableBytes, random.Next(1, 9000))));
            }

            buffer.Release();
            if (offLoopPending > 0 || random.Next(4) == 0)
            {
                // From another thread: each write is queued to the loop in order; the count drops once they all are.
                var channel = context.Channel;
                offLoopPending++;
                offLoop = offLoop.ContinueWith(
                    _ =>
                    {
                        foreach (var piece in pieces)
                        {
                            _ = channel.WriteAsync(piece);
                        }

                        channel.Flush();
                        channel.EventLoop.Execute(() => offLoopPending--);
                    },
                    TaskScheduler.Default);
                return;
            }

            foreach (var piece in pieces)
            {
                _ = context.WriteAsync(piece);
                if (random.Next(3) == 0)
                {
                    context.Flush();
                }
            }

            context.Flush();
        }
    }

    /// <summary>Catches the channel a bootstrap made, so a failed connect can be checked for what it left open.</summary>
    private sealed class ChannelCatcher : ChannelHandlerAdapter
    {
        private readonly TaskCompletionSource<IChannel> made = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public override bool IsSharable => true;

        public override void HandlerAdded(IChannelHandlerContext context) => made.TrySetResult(context.Channel);

        public async Task<bool> IsOpenAsync() => (await made.Task.WaitAsync(Timeout)).Open;

        public async Task CloseAsync() => await (await made.Task.WaitAsync(Timeout)).CloseAsync().WaitAsync(Timeout);

        public async Task AssertClosedAsync()
        {
            var channel = await made.Task.WaitAsync(Timeout);
            await channel.CloseCompletion.WaitAsync(Timeout);
            Assert.False(channel.Open);
            if (channel is EpollSocketChannel epoll)
            {
                Assert.Equal(-1, epoll.FileDescriptor);
            }
        }
    }

    private sealed class Restore(Action undo) : IDisposable
    {
        public void Dispose() => undo();
    }

    /// <summary>Collects what it reads until a count, in order.</summary>
    private sealed class Collector(int expected) : ChannelHandlerAdapter
    {
        private readonly List<byte> received = new(expected);
        private readonly TaskCompletionSource<byte[]> done = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Task<byte[]> Done => done.Task;

        public override void ChannelRead(IChannelHandlerContext context, object message)
        {
            var buffer = (IByteBuffer)message;
            var bytes = new byte[buffer.ReadableBytes];
            buffer.ReadBytes(bytes);
            buffer.Release();
            received.AddRange(bytes);
            if (received.Count >= expected)
            {
                done.TrySetResult([.. received]);
            }
        }
    }

    /// <summary>What the pipeline saw: the first error, input shutdown, writability both ways, inactive, and text read.</summary>
    private sealed class EventRecorder : ChannelHandlerAdapter
    {
        private readonly TaskCompletionSource<Exception> error = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly TaskCompletionSource inputShutdown = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly TaskCompletionSource inactive = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly TaskCompletionSource unwritable = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly TaskCompletionSource writableAgain = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly System.Threading.Channels.Channel<byte> text = System.Threading.Channels.Channel.CreateUnbounded<byte>();

        public Exception? Error => error.Task.IsCompleted ? error.Task.Result : null;

        public Task InputShutdown => inputShutdown.Task;

        public Task Inactive => inactive.Task;

        public Task Unwritable => unwritable.Task;

        public Task WritableAgain => writableAgain.Task;

        public override bool IsSharable => true;

        public Task<Exception> ErrorAsync(TimeSpan timeout) => error.Task.WaitAsync(timeout);

        public async Task<string> NextTextAsync(int length)
        {
            var bytes = new byte[length];
            for (var i = 0; i < length; i++)
            {
                bytes[i] = await text.Reader.ReadAsync().AsTask().WaitAsync(Timeout);
            }

            return System.Text.Encoding.ASCII.GetString(bytes);
        }

        public override void ChannelRead(IChannelHandlerContext context, object message)
        {
            var buffer = (IByteBuffer)message;
            while (buffer.IsReadable())
            {
                text.Writer.TryWrite(buffer.ReadByte());
            }

            ReferenceCountUtil.Release(message);
        }

        public override void ExceptionCaught(IChannelHandlerContext context, Exception exception) => error.TrySetResult(exception);

        public override void UserEventTriggered(IChannelHandlerContext context, object evt)
        {
            if (evt is ChannelInputShutdownEvent)
            {
                inputShutdown.TrySetResult();
            }

            context.FireUserEventTriggered(evt);
        }

        public override void ChannelWritabilityChanged(IChannelHandlerContext context)
        {
            if (!context.Channel.IsWritable)
            {
                unwritable.TrySetResult();
            }
            else if (unwritable.Task.IsCompleted)
            {
                writableAgain.TrySetResult();
            }

            context.FireChannelWritabilityChanged();
        }

        public override void ChannelInactive(IChannelHandlerContext context)
        {
            inactive.TrySetResult();
            context.FireChannelInactive();
        }
    }
}
