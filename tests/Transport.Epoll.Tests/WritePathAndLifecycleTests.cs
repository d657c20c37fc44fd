using System.Net;
using System.Net.Sockets;
using DotNetty.Buffers;
using DotNetty.Common.Concurrency;
using DotNetty.Transport.Bootstrapping;
using DotNetty.Transport.Channels;
using Tests.Shared;

using TaskCompletionSource = System.Threading.Tasks.TaskCompletionSource;

namespace Transport.Epoll.Tests;

/// <summary>
/// The write path under backpressure and the channel's life at its edges (a connect that fails at once, options set
/// before registration, the loop's shutdown, a write after our own FIN, a peer gone before accept), one test per
/// rule. Every connection here shares one worker loop, which is where one channel's leftovers can reach another.
/// </summary>
public sealed class WritePathAndLifecycleTests() : LoopbackTestBase(workerThreads: 1)
{
    private const int BlockedPeerReceiveBuffer = 4096;
    private const int BigWrite = 30 * 1024;
    private const int MaxBigWrites = 1000;

    [Fact]
    public async Task AWriteIntoAFullSocket_LeavesNothingBehind_ForTheNextChannelOnTheLoop()
    {
        // A blocked channel's EAGAIN pass must not leave its gathered segments in the loop thread's shared list: the
        // next channel to write on that thread would send them on its own socket and count them against its own queue.
        var accepted = new AcceptedChannels();
        var server = await ListenAsync(accepted.Add);
        using var blockedPeer = await ConnectSocketAsync(server, BlockedPeerReceiveBuffer);
        var blocked = await accepted.NextAsync();
        using var talker = await ConnectSocketAsync(server);
        var talking = await accepted.NextAsync();

        await FillUntilUnwritableAsync(blocked, (byte)'A');

        // Many small flushes on the other channel, each its own DoWrite on the same thread.
        const int Messages = 200;
        const int MessageSize = 50;
        await talking.EventLoop.SubmitAsync(() =>
        {
            for (var i = 0; i < Messages; i++)
            {
                _ = talking.WriteAndFlushAsync(Unpooled.WrappedBuffer(Pattern(i, MessageSize)));
            }

            return 0;
        }).WaitAsync(Timeout);

        var expected = Enumerable.Range(0, Messages).SelectMany(i => Pattern(i, MessageSize)).ToArray();
        var received = await SocketReads.ReceiveExactlyAsync(talker, expected.Length, Timeout);
        Assert.Equal(expected, received);
        talker.ReceiveTimeout = 200;
        Assert.Equal(0, talker.Available); // nothing extra, nothing of the blocked channel's
        await server.CloseAsync();
    }

    [Fact]
    public async Task FlushesWhileWaitingForRoom_MakeNoSendCalls_UntilEpollSaysThereIsRoom()
    {
        var accepted = new AcceptedChannels();
        var server = await ListenAsync(accepted.Add);
        using var blockedPeer = await ConnectSocketAsync(server, BlockedPeerReceiveBuffer);
        var blocked = (EpollSocketChannel)await accepted.NextAsync();
        await FillUntilUnwritableAsync(blocked, (byte)'A');

        var before = await blocked.EventLoop.SubmitAsync(() => blocked.SendCalls).WaitAsync(Timeout);
        var after = await blocked.EventLoop.SubmitAsync(() =>
        {
            for (var i = 0; i < 100; i++)
            {
                _ = blocked.WriteAndFlushAsync(Unpooled.WrappedBuffer(new byte[16]));
            }

            return blocked.SendCalls;
        }).WaitAsync(Timeout);

        Assert.Equal(before, after);
        await server.CloseAsync();
    }

    [Fact]
    public async Task AConnectThatFailsAtOnce_ClosesTheChannel_AndItsDescriptor()
    {
        // TCP to a multicast address fails inside connect() itself (ENETUNREACH): no packet leaves the machine.
        var channel = new EpollSocketChannel();
        await Workers.RegisterAsync(channel).WaitAsync(Timeout);
        var error = await Assert.ThrowsAnyAsync<Exception>(() => channel.ConnectAsync(new IPEndPoint(IPAddress.Parse("224.0.0.1"), 9)).WaitAsync(Timeout));

        var socketError = Assert.IsType<EpollSocketException>(error.InnerException ?? error);
        Assert.Equal(101, socketError.Errno); // ENETUNREACH
        await channel.CloseCompletion.WaitAsync(Timeout);
        Assert.False(channel.Open);
        Assert.Equal(-1, channel.FileDescriptor);
    }

    [Fact]
    public async Task AutoReadOff_SetBeforeRegistration_IsKept_AndNothingIsReadUntilAsked()
    {
        // Options are set on a channel before it has a loop: a client's Bootstrap.Option and a server's ChildOption.
        var unregistered = new EpollSocketChannel();
        unregistered.Configuration.AutoRead = false;
        Assert.False(unregistered.Configuration.AutoRead);

        var read = new TaskCompletionSource<IChannel>(TaskCreationOptions.RunContinuationsAsynchronously);
        var accepted = new TaskCompletionSource<IChannel>(TaskCreationOptions.RunContinuationsAsynchronously);
        var server = await new ServerBootstrap()
            .Group(Boss, Workers)
            .Channel<EpollServerSocketChannel>()
            .ChildOption(ChannelOption.AutoRead, false)
            .ChildHandler(new ActionChannelInitializer<IChannel>(ch =>
            {
                ch.Pipeline.AddLast(new OnRead(() => read.TrySetResult(ch)));
                accepted.TrySetResult(ch);
            }))
            .BindAsync(new IPEndPoint(IPAddress.Loopback, 0))
            .WaitAsync(Timeout);
        using var socket = await ConnectSocketAsync(server);
        var channel = await accepted.Task.WaitAsync(Timeout);
        socket.Send("hello"u8);

        Assert.False(await channel.EventLoop.SubmitAsync(() => channel.Configuration.AutoRead).WaitAsync(Timeout));
        await WaitUntilAsync(() => channel is EpollSocketChannel { UnreadBytes: > 0 });
        Assert.False(read.Task.IsCompleted); // the bytes wait in the kernel: nobody asked for them

        channel.Read();
        await read.Task.WaitAsync(Timeout);
        await server.CloseAsync();
    }

    [Fact]
    public async Task AWriteAfterShutdownOutput_FailsThatWrite_AndTheChannelReadsOn()
    {
        var accepted = new AcceptedChannels();
        var received = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        var server = await ListenAsync(
            ch =>
            {
                ch.Pipeline.AddLast(new OnReadText(received));
                accepted.Add(ch);
            },
            halfClosure: true);
        using var socket = await ConnectSocketAsync(server);
        var channel = (EpollSocketChannel)await accepted.NextAsync();

        await channel.ShutdownOutputAsync().WaitAsync(Timeout);
        Assert.Equal(0, await socket.ReceiveAsync(new byte[16]).WaitAsync(Timeout)); // our FIN arrived

        var write = Unpooled.WrappedBuffer(new byte[8]);
        await Assert.ThrowsAsync<ChannelOutputShutdownException>(() => channel.WriteAndFlushAsync(write).WaitAsync(Timeout));
        Assert.Equal(0, write.ReferenceCount);
        Assert.True(channel.Open);

        socket.Send("still here"u8);
        Assert.Equal("still here", await received.Task.WaitAsync(Timeout));
        await server.CloseAsync();
    }

    [Fact]
    public async Task ShutdownOutput_FailsTheWritesStillQueued_AndTheChannelReadsOn()
    {
        var accepted = new AcceptedChannels();
        var server = await ListenAsync(accepted.Add, halfClosure: true);
        using var blockedPeer = await ConnectSocketAsync(server, BlockedPeerReceiveBuffer);
        var channel = (EpollSocketChannel)await accepted.NextAsync();
        await FillUntilUnwritableAsync(channel, (byte)'A');

        var queued = Unpooled.WrappedBuffer(new byte[16]);
        var write = await channel.EventLoop.SubmitAsync(() => channel.WriteAndFlushAsync(queued)).WaitAsync(Timeout);
        await channel.ShutdownOutputAsync().WaitAsync(Timeout);

        await Assert.ThrowsAsync<ChannelOutputShutdownException>(() => write.WaitAsync(Timeout));
        Assert.Equal(0, queued.ReferenceCount);
        Assert.True(channel.Open);
        await server.CloseAsync();
    }

    [Fact]
    public async Task LoopShutdown_StillClosesAChannelWhoseHandlerHoldsBackItsClose()
    {
        // A handler that never passes the close on (waiting for a farewell that cannot come while the loop stops): the
        // loop's last resort still completes CloseCompletion and releases what was queued.
        var group = new EpollEventLoopGroup(1);
        var server = await ListenAsync(_ => { });
        var client = await new Bootstrap()
            .Group(group)
            .Channel<EpollSocketChannel>()
            .Handler(new SwallowClose())
            .ConnectAsync(server.LocalAddress)
            .WaitAsync(Timeout);
        var queued = Unpooled.Buffer(8).WriteLong(7);
        _ = await client.EventLoop.SubmitAsync(() => client.WriteAsync(queued)).WaitAsync(Timeout); // written, not flushed

        await group.ShutdownGracefullyAsync(TimeSpan.Zero, TimeSpan.FromSeconds(5)).WaitAsync(Timeout);
        await client.CloseCompletion.WaitAsync(Timeout);
        Assert.Equal(0, queued.ReferenceCount);
        await server.CloseAsync();
    }

    [Fact]
    public async Task APeerThatResetBeforeAccept_StillHasItsRemoteAddress()
    {
        // The listener stops accepting; a client connects (the kernel completes the handshake into the backlog) and
        // resets at once; then the listener accepts it. getpeername fails on such a socket, accept4's own output does not.
        var accepted = new AcceptedChannels();
        var server = await ListenAsync(accepted.Add);
        server.Configuration.AutoRead = false;
        await server.EventLoop.SubmitAsync(() => 0).WaitAsync(Timeout); // the pause is in effect

        IPEndPoint clientAddress;
        using (var socket = await ConnectSocketAsync(server))
        {
            clientAddress = (IPEndPoint)socket.LocalEndPoint!;
            socket.LingerState = new LingerOption(true, 0);
        }

        server.Configuration.AutoRead = true;
        server.Read();
        var channel = (EpollSocketChannel)await accepted.NextAsync();
        Assert.Null(Native.SockAddr.RemoteOf(channel.FileDescriptor)); // the case is real: getpeername fails on it
        Assert.Equal(clientAddress, channel.RemoteAddress);
        await server.CloseAsync();
    }

    [Fact]
    public async Task ADeepBacklogOfTinyWrites_IsSentInOrder_InTimeLinearInItsLength()
    {
        // Each gathering pass looks at a bounded part of the flushed backlog; summing the whole backlog on every pass
        // made this quadratic: 15-25 s for this many buffers here, where a linear pass takes about a second.
        const int Writes = 300_000;
        var accepted = new AcceptedChannels();
        var server = await ListenAsync(accepted.Add);
        using var socket = await ConnectSocketAsync(server);
        var channel = await accepted.NextAsync();

        await channel.EventLoop.SubmitAsync(() =>
        {
            for (var i = 0; i < Writes; i++)
            {
                _ = channel.WriteAsync(Unpooled.WrappedBuffer([(byte)i]));
            }

            channel.Flush();
            return 0;
        }).WaitAsync(Timeout);

        var received = await SocketReads.ReceiveExactlyAsync(socket, Writes, Timeout).WaitAsync(TimeSpan.FromSeconds(10));
        for (var i = 0; i < Writes; i++)
        {
            Assert.True(received[i] == (byte)i, $"byte {i} was {received[i]}");
        }

        await server.CloseAsync();
    }

    [Fact]
    public async Task LoopShutdown_ClosesAChannelRegisteredDuringItsLastTasks_ThroughItsPipeline()
    {
        // A channel registered while the loop shuts down (a reconnect from a ChannelInactive handler, a registration
        // racing the stop) is closed like every other: CloseCompletion completes, its queued write fails and its
        // buffer is released.
        var group = new EpollEventLoopGroup(1);
        var loop = (IEventLoop)group.GetNext();
        var late = new EpollSocketChannel();
        var buffer = Unpooled.Buffer(8).WriteLong(42);
        var write = new TaskCompletionSource<Task>(TaskCreationOptions.RunContinuationsAsynchronously);
        loop.Execute(() =>
        {
            _ = group.ShutdownGracefullyAsync(TimeSpan.Zero, TimeSpan.FromSeconds(5));
            loop.Execute(() =>
            {
                _ = loop.RegisterAsync(late);
                write.TrySetResult(late.WriteAsync(buffer));
            });
        });

        await group.TerminationCompletion.WaitAsync(Timeout);
        await late.CloseCompletion.WaitAsync(Timeout);
        var pending = await write.Task.WaitAsync(Timeout);
        await Assert.ThrowsAnyAsync<Exception>(() => pending.WaitAsync(Timeout));
        Assert.Equal(0, buffer.ReferenceCount);
    }

    [Fact]
    public async Task LoopShutdown_ClosesChannelsThroughThePipeline_SoHandlersSeeTheClose()
    {
        var group = new EpollEventLoopGroup(1);
        var server = await ListenAsync(_ => { });
        var closeSeen = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var client = await new Bootstrap()
            .Group(group)
            .Channel<EpollSocketChannel>()
            .Handler(new OnCloseRequested(closeSeen))
            .ConnectAsync(server.LocalAddress)
            .WaitAsync(Timeout);

        await group.ShutdownGracefullyAsync(TimeSpan.Zero, TimeSpan.FromSeconds(5)).WaitAsync(Timeout);
        await client.CloseCompletion.WaitAsync(Timeout);
        Assert.True(closeSeen.Task.IsCompleted, "the loop closed the channel around its pipeline");
        await server.CloseAsync();
    }

    [Fact]
    public async Task EveryTaskTheLoopAccepts_Runs_AndNoRejectedTaskRuns_AcrossItsShutdown()
    {
        // Execute either throws (the task will never run) or returns (the task will run), even while the loop stops.
        for (var round = 0; round < 50; round++)
        {
            var loop = new EpollEventLoop();
            loop.Execute(() => { });
            var accepted = 0;
            var ran = 0;
            var rejectedButRan = 0;
            using var start = new ManualResetEventSlim();
            var producer = Task.Factory.StartNew(
                () =>
                {
                    start.Wait();
                    for (var i = 0; i < 20_000; i++)
                    {
                        var rejected = 0;
                        try
                        {
                            loop.Execute(() =>
                            {
                                Interlocked.Increment(ref ran);
                                if (Volatile.Read(ref rejected) == 1)
                                {
                                    Interlocked.Increment(ref rejectedButRan);
                                }
                            });
                            accepted++;
                        }
                        catch (RejectedExecutionException)
                        {
                            Volatile.Write(ref rejected, 1);
                        }
                    }
                },
                CancellationToken.None,
                TaskCreationOptions.LongRunning,
                TaskScheduler.Default);
            start.Set();
            Thread.SpinWait(round * 500);
            await loop.ShutdownGracefullyAsync(TimeSpan.Zero, TimeSpan.FromSeconds(5)).WaitAsync(Timeout);
            await producer.WaitAsync(Timeout);
            Assert.Equal(0, Volatile.Read(ref rejectedButRan));
            Assert.Equal(accepted, Volatile.Read(ref ran));
        }
    }

    [Fact]
    public async Task DirectWrites_ToManyChannelsOnOneLoop_WithSocketsFillingAndDraining_ArriveByteExact_InOrderWithPipelineWrites()
    {
        // The broadcast path: each channel gets frames straight to its socket while nothing is queued and through the
        // pipeline otherwise, its readers are slower than its writer (small receive buffers), and every channel shares
        // the one worker loop. Each peer must read exactly its own bytes, in the order they were written.
        const int Channels = 16;
        const int Rounds = 300;
        var accepted = new AcceptedChannels();

        // Small kernel buffers on both ends, so sends go partial and meet EAGAIN within a few rounds.
        var server = await ListenAsync(channel =>
        {
            channel.Configuration.SetOption(ChannelOption.SoSndbuf, BlockedPeerReceiveBuffer);
            accepted.Add(channel);
        });
        var peers = new List<Socket>();
        var channels = new List<EpollSocketChannel>();
        for (var i = 0; i < Channels; i++)
        {
            peers.Add(await ConnectSocketAsync(server, BlockedPeerReceiveBuffer));
            channels.Add((EpollSocketChannel)await accepted.NextAsync());
        }

        byte[] Message(int channel, int round) => Pattern((channel * 7) + round, 100 + (((channel * 131) + (round * 977)) % 3000));
        var expected = Enumerable.Range(0, Channels).Select(c => Enumerable.Range(0, Rounds).SelectMany(r => Message(c, r)).ToArray()).ToList();
        List<Task<byte[]>>? reads = null;

        var direct = 0;
        var piped = 0;
        for (var round = 0; round < Rounds; round++)
        {
            if (round == Rounds / 3)
            {
                // The readers start late: by now every socket has filled and the pipeline holds a backlog, which
                // drains to empty again while the rounds go on.
                reads = peers.Select((peer, c) => SocketReads.ReceiveExactlyAsync(peer, expected[c].Length, Timeout)).ToList();
            }

            var r = round;
            await channels[0].EventLoop.SubmitAsync(() =>
            {
                for (var c = 0; c < Channels; c++)
                {
                    var message = Unpooled.WrappedBuffer(Message(c, r));
                    if (channels[c].TryWriteNow(message))
                    {
                        Assert.Equal(0, message.ReaderIndex); // the caller's buffer is left as it was
                        message.Release();
                        direct++;
                    }
                    else
                    {
                        _ = channels[c].WriteAndFlushAsync(message);
                        piped++;
                    }
                }

                return 0;
            }).WaitAsync(Timeout);
        }

        for (var c = 0; c < Channels; c++)
        {
            Assert.Equal(expected[c], await reads![c]);
        }

        Assert.True(direct > 0 && piped > 0, $"both paths should have been taken: {direct} direct, {piped} through the pipeline");
        var partial = await channels[0].EventLoop.SubmitAsync(() => channels.Sum(c => c.PartialDirectWrites)).WaitAsync(Timeout);
        Assert.True(partial > 0, "no direct write was cut short: the rule for the rest went untested");
        foreach (var peer in peers)
        {
            Assert.False(peer.Poll(200_000, SelectMode.SelectRead), "a byte more than written arrived"); // nothing extra, nothing of another channel's
            peer.Dispose();
        }

        await server.CloseAsync();
    }

    [Fact]
    public async Task ADirectWrite_SendsNothing_WhileAnythingIsQueuedAhead_OrAfterOurFin()
    {
        var accepted = new AcceptedChannels();
        var server = await ListenAsync(accepted.Add);
        using var blockedPeer = await ConnectSocketAsync(server, BlockedPeerReceiveBuffer);
        var blocked = (EpollSocketChannel)await accepted.NextAsync();
        using var finPeer = await ConnectSocketAsync(server);
        var finished = (EpollSocketChannel)await accepted.NextAsync();
        await FillUntilUnwritableAsync(blocked, (byte)'A');
        await finished.ShutdownOutputAsync().WaitAsync(Timeout);

        var (queuedAhead, afterFin, sendCalls) = await blocked.EventLoop.SubmitAsync(() =>
        {
            var before = blocked.SendCalls + finished.SendCalls;
            var one = Unpooled.WrappedBuffer(new byte[] { 1, 2, 3 });
            var two = Unpooled.WrappedBuffer(new byte[] { 1, 2, 3 });
            var result = (blocked.TryWriteNow(one), finished.TryWriteNow(two), blocked.SendCalls + finished.SendCalls - before);
            one.Release();
            two.Release();
            return result;
        }).WaitAsync(Timeout);

        Assert.False(queuedAhead);
        Assert.False(afterFin);
        Assert.Equal(0L, sendCalls);

        // A write not yet flushed is ahead too: a direct write must not pass it (were it cut short, its rest would be
        // queued behind that write, and the peer would get one frame spliced into another).
        using var quietPeer = await ConnectSocketAsync(server);
        var quiet = (EpollSocketChannel)await accepted.NextAsync();
        var (passedUnflushed, quietSends) = await quiet.EventLoop.SubmitAsync(() =>
        {
            var before = quiet.SendCalls;
            _ = quiet.WriteAsync(Unpooled.WrappedBuffer(new byte[] { 7, 7 })); // written, not flushed
            var data = Unpooled.WrappedBuffer(new byte[] { 8, 8 });
            var taken = quiet.TryWriteNow(data);
            data.Release();
            quiet.Flush();
            return (taken, quiet.SendCalls - before);
        }).WaitAsync(Timeout);
        Assert.False(passedUnflushed);
        Assert.Equal(1L, quietSends); // only the flush's
        Assert.Equal(new byte[] { 7, 7 }, await SocketReads.ReceiveExactlyAsync(quietPeer, 2, Timeout));
        await Assert.ThrowsAsync<InvalidOperationException>(() => Task.Run(() => blocked.TryWriteNow(Unpooled.WrappedBuffer(new byte[1])))); // off the loop
        await server.CloseAsync();
    }

    [Fact]
    public async Task ADirectWriteThatFails_ReachesThePipeline_AsAWriteError_WithItsErrno_AndCloses()
    {
        var caught = new TaskCompletionSource<Exception>(TaskCreationOptions.RunContinuationsAsynchronously);
        var accepted = new AcceptedChannels();
        var server = await ListenAsync(channel =>
        {
            channel.Configuration.AutoRead = false; // the reset must be met by the send, not read first
            channel.Pipeline.AddLast(new OnCaught(caught));
            accepted.Add(channel);
        });
        var peer = await ConnectSocketAsync(server);
        var channel = (EpollSocketChannel)await accepted.NextAsync();
        peer.LingerState = new LingerOption(true, 0);
        peer.Close(); // RST

        var data = Unpooled.WrappedBuffer(new byte[64]);
        bool taken = false;
        for (var i = 0; i < 50 && !caught.Task.IsCompleted; i++)
        {
            await Task.Delay(20);
            taken = await channel.EventLoop.SubmitAsync(() => channel.TryWriteNow(data)).WaitAsync(Timeout);
        }

        var error = Assert.IsType<EpollSocketException>(await caught.Task.WaitAsync(Timeout));
        Assert.True(taken); // handled, not to be sent again through the pipeline (a reset is reported once)
        Assert.True(error.OnWrite);
        Assert.True(error.Errno is 104 or 32, $"errno {error.Errno}"); // ECONNRESET, or EPIPE once the reset was taken
        await channel.CloseCompletion.WaitAsync(Timeout);
        Assert.Equal(1, data.ReferenceCount); // still the caller's
        data.Release();
        await server.CloseAsync();
    }

    private sealed class OnCaught(TaskCompletionSource<Exception> caught) : ChannelHandlerAdapter
    {
        public override void ExceptionCaught(IChannelHandlerContext context, Exception exception) => caught.TrySetResult(exception);
    }

    private static async Task FillUntilUnwritableAsync(IChannel channel, byte fill)
    {
        var chunk = new byte[BigWrite];
        Array.Fill(chunk, fill);
        var filled = await channel.EventLoop.SubmitAsync(() =>
        {
            for (var i = 0; i < MaxBigWrites && channel.IsWritable; i++)
            {
                _ = channel.WriteAndFlushAsync(Unpooled.WrappedBuffer(chunk));
            }

            return !channel.IsWritable;
        }).WaitAsync(Timeout);
        Assert.True(filled, "the peer's socket never filled");
    }

    private static byte[] Pattern(int message, int size)
    {
        var bytes = new byte[size];
        for (var i = 0; i < size; i++)
        {
            bytes[i] = (byte)('a' + ((message + i) % 26));
        }

        return bytes;
    }

    private static async Task WaitUntilAsync(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow + Timeout;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "condition not met in time");
            await Task.Delay(10);
        }
    }

    private static async Task<Socket> ConnectSocketAsync(IChannel server, int receiveBuffer)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { ReceiveBufferSize = receiveBuffer };
        await socket.ConnectAsync(server.LocalAddress).WaitAsync(Timeout);
        return socket;
    }

    /// <summary>Accepted channels in accept order.</summary>
    private sealed class AcceptedChannels
    {
        private readonly System.Threading.Channels.Channel<IChannel> channels = System.Threading.Channels.Channel.CreateUnbounded<IChannel>();

        public void Add(IChannel channel) => channels.Writer.TryWrite(channel);

        public async Task<IChannel> NextAsync() => await channels.Reader.ReadAsync().AsTask().WaitAsync(Timeout);
    }

    private sealed class OnRead(Action onRead) : ChannelHandlerAdapter
    {
        public override void ChannelRead(IChannelHandlerContext context, object message)
        {
            DotNetty.Common.Utilities.ReferenceCountUtil.Release(message);
            onRead();
        }
    }

    private sealed class OnReadText(TaskCompletionSource<string> received) : ChannelHandlerAdapter
    {
        public override void ChannelRead(IChannelHandlerContext context, object message)
        {
            var buffer = (IByteBuffer)message;
            received.TrySetResult(buffer.ToString(System.Text.Encoding.ASCII));
            buffer.Release();
        }
    }

    private sealed class SwallowClose : ChannelHandlerAdapter
    {
        public override Task CloseAsync(IChannelHandlerContext context) => Task.CompletedTask;
    }

    private sealed class OnCloseRequested(TaskCompletionSource seen) : ChannelHandlerAdapter
    {
        public override Task CloseAsync(IChannelHandlerContext context)
        {
            seen.TrySetResult();
            return context.CloseAsync();
        }
    }
}
