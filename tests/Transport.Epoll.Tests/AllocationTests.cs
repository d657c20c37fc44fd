using System.Net;
using System.Net.Sockets;
using DotNetty.Buffers;
using DotNetty.Transport.Bootstrapping;
using DotNetty.Transport.Channels;
using Xunit.Abstractions;

namespace Transport.Epoll.Tests;

/// <summary>
/// What reads and echoes cost the loop thread in allocations, measured with GC.GetAllocatedBytesForCurrentThread on
/// that thread over many thousands of operations after a warm-up, and set against what DotNetty's own parts cost on
/// the same thread in the same run: its pooled allocator (a 96-byte object per buffer, more with its sampling leak
/// detector), its write promise (96 bytes) and its Channel.Read() after each read complete (32 bytes). What is left
/// is this transport's: epoll_wait, read, sendmsg and the outbound bookkeeping must add nothing.
/// </summary>
public sealed class AllocationTests(ITestOutputHelper output)
{
    private const int WarmUp = 5_000;
    private const int Measured = 20_000;

    // Slack for what a run cannot hold still: the adaptive receive buffer changing its size class now and then.
    private const double TransportSlackBytes = 16;

    [Fact]
    public async Task SteadyStateReads_AllocateNothingBeyondDotNettysAllocatorAndReadCall()
    {
        await using var fixture = await Fixture.StartAsync();
        var counter = new Probe(WarmUp, WarmUp + Measured, echo: false);
        var server = await fixture.ListenAsync(counter);

        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(server.LocalAddress);
        var message = new byte[32];
        while (!counter.Done.IsCompleted)
        {
            await socket.SendAsync(message);
            await Task.Yield();
        }

        var perRead = counter.BytesPerOperation(Measured);
        var allocator = await fixture.AllocatorCostAsync();
        var readCall = await fixture.ReadCallCostAsync(counter.Channel!);
        output.WriteLine(
            $"per read: {perRead:0.0} bytes on the loop thread; DotNetty's allocator {allocator:0.0} bytes per buffer, its Channel.Read() (after every read complete) {readCall:0.0} bytes");
        Assert.True(perRead - allocator - readCall < TransportSlackBytes, $"the receive path allocates {perRead - allocator - readCall:0.0} bytes per read beyond DotNetty's parts");
        await server.CloseAsync();
    }

    [Fact]
    public async Task SteadyStateEchoes_AllocateNothingBeyondDotNettysAllocatorPromiseAndReadCall()
    {
        await using var fixture = await Fixture.StartAsync();
        var probe = new Probe(WarmUp, WarmUp + Measured, echo: true);
        var server = await fixture.ListenAsync(probe);

        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(server.LocalAddress);
        var request = new byte[32];
        var answer = new byte[32];
        while (!probe.Done.IsCompleted)
        {
            await socket.SendAsync(request);
            var got = 0;
            while (got < answer.Length)
            {
                got += await socket.ReceiveAsync(answer.AsMemory(got));
            }
        }

        var perEcho = probe.BytesPerOperation(Measured);
        var allocator = await fixture.AllocatorCostAsync();
        var promise = await fixture.WritePromiseCostAsync();
        var readCall = await fixture.ReadCallCostAsync(probe.Channel!);
        output.WriteLine(
            $"per echo: {perEcho:0.0} bytes on the loop thread; DotNetty's allocator {allocator:0.0} bytes per buffer, its WriteAsync promise {promise:0.0} bytes, its Channel.Read() {readCall:0.0} bytes");
        Assert.True(perEcho - allocator - promise - readCall < TransportSlackBytes, $"the echo path allocates {perEcho - allocator - promise - readCall:0.0} bytes per echo beyond DotNetty's parts");
        await server.CloseAsync();
    }

    private sealed class Fixture : IAsyncDisposable
    {
        private readonly EpollEventLoopGroup boss = new(1);
        private readonly EpollEventLoopGroup worker = new(1);

        private readonly DotNetty.Common.ResourceLeakDetector.DetectionLevel leakDetection = DotNetty.Common.ResourceLeakDetector.Level;

        // DotNetty's leak detector samples buffers at random and allocates for those it tracks: off here, so that what
        // the allocator costs is the same number on every run and can be told apart from the transport's share.
        private Fixture() => DotNetty.Common.ResourceLeakDetector.Level = DotNetty.Common.ResourceLeakDetector.DetectionLevel.Disabled;

        public static Task<Fixture> StartAsync() => Task.FromResult(new Fixture());

        public async Task<IChannel> ListenAsync(IChannelHandler handler) =>
            await new ServerBootstrap()
                .Group(boss, worker)
                .Channel<EpollServerSocketChannel>()
                .ChildOption(ChannelOption.Allocator, PooledByteBufferAllocator.Default)
                .ChildHandler(new ActionChannelInitializer<IChannel>(ch => ch.Pipeline.AddLast(handler)))
                .BindAsync(new IPEndPoint(IPAddress.Loopback, 0));

        /// <summary>A pooled buffer taken and released on the loop thread, as the read path does once per read.</summary>
        public Task<double> AllocatorCostAsync() => OnLoopAsync(() =>
        {
            var allocator = PooledByteBufferAllocator.Default;
            var before = GC.GetAllocatedBytesForCurrentThread();
            for (var i = 0; i < Measured; i++)
            {
                allocator.Buffer(1024).Release();
            }

            return (double)(GC.GetAllocatedBytesForCurrentThread() - before) / Measured;
        });

        /// <summary>
        /// DotNetty's <c>Channel.Read()</c>, which its pipeline calls after every read complete while AutoRead is on;
        /// it reaches this transport's <c>DoBeginRead</c> (which allocates nothing) through DotNetty's own code.
        /// </summary>
        public Task<double> ReadCallCostAsync(IChannel channel) => OnLoopAsync(() =>
        {
            var before = GC.GetAllocatedBytesForCurrentThread();
            for (var i = 0; i < Measured; i++)
            {
                channel.Read();
            }

            return (double)(GC.GetAllocatedBytesForCurrentThread() - before) / Measured;
        });

        /// <summary>The promise DotNetty 0.7.6 makes for every WriteAsync, made on the loop thread.</summary>
        public Task<double> WritePromiseCostAsync() => OnLoopAsync(() =>
        {
            var before = GC.GetAllocatedBytesForCurrentThread();
            for (var i = 0; i < Measured; i++)
            {
                _ = new DotNetty.Common.Concurrency.TaskCompletionSource();
            }

            return (double)(GC.GetAllocatedBytesForCurrentThread() - before) / Measured;
        });

        public async ValueTask DisposeAsync()
        {
            await Task.WhenAll(
                boss.ShutdownGracefullyAsync(TimeSpan.Zero, TimeSpan.FromSeconds(5)),
                worker.ShutdownGracefullyAsync(TimeSpan.Zero, TimeSpan.FromSeconds(5)));
            DotNetty.Common.ResourceLeakDetector.Level = leakDetection;
        }

        private Task<double> OnLoopAsync(Func<double> measure)
        {
            var result = new TaskCompletionSource<double>(TaskCreationOptions.RunContinuationsAsynchronously);
            worker.GetNext().Execute(() => result.SetResult(measure()));
            return result.Task;
        }
    }

    private sealed class Probe(int startAt, int endAt, bool echo) : ChannelHandlerAdapter
    {
        private readonly TaskCompletionSource done = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private int operations;
        private long start;
        private long end;

        public Task Done => done.Task;

        public IChannel? Channel { get; private set; }

        public override bool IsSharable => true;

        public override void ChannelActive(IChannelHandlerContext context)
        {
            Channel = context.Channel;
            context.FireChannelActive();
        }

        public double BytesPerOperation(int count) => (double)(end - start) / count;

        public override void ChannelRead(IChannelHandlerContext context, object message)
        {
            operations++;
            if (operations == startAt)
            {
                start = GC.GetAllocatedBytesForCurrentThread();
            }
            else if (operations == endAt)
            {
                end = GC.GetAllocatedBytesForCurrentThread();
                done.TrySetResult();
            }

            if (echo)
            {
                context.WriteAsync(message);
            }
            else
            {
                ((IByteBuffer)message).Release();
            }
        }

        public override void ChannelReadComplete(IChannelHandlerContext context)
        {
            if (echo)
            {
                context.Flush();
            }
        }
    }
}
