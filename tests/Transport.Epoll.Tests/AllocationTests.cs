using System.Net;
using System.Net.Sockets;
using DotNetty.Buffers;
using DotNetty.Transport.Bootstrapping;
using DotNetty.Transport.Channels;
using Xunit.Abstractions;

namespace Transport.Epoll.Tests;

/// <summary>
/// What one echo costs the loop thread in allocations, measured with GC.GetAllocatedBytesForCurrentThread on that
/// thread over thousands of round trips after a warm-up.
/// </summary>
public sealed class AllocationTests(ITestOutputHelper output)
{
    private const int WarmUp = 5_000;
    private const int Measured = 20_000;

    [Fact]
    public async Task SteadyStateEcho_OnTheLoopThread_AllocatesNothingOnTheTransportPath()
    {
        var boss = new EpollEventLoopGroup(1);
        var worker = new EpollEventLoopGroup(1);
        try
        {
            var probe = new AllocationProbe(WarmUp, WarmUp + Measured);
            var server = await new ServerBootstrap()
                .Group(boss, worker)
                .Channel<EpollServerSocketChannel>()
                .ChildOption(ChannelOption.Allocator, PooledByteBufferAllocator.Default)
                .ChildHandler(new ActionChannelInitializer<IChannel>(ch => ch.Pipeline.AddLast(probe)))
                .BindAsync(new IPEndPoint(IPAddress.Loopback, 0));

            using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            await socket.ConnectAsync(server.LocalAddress);
            var request = new byte[32];
            var answer = new byte[32];
            for (var i = 0; i < WarmUp + Measured + 10; i++)
            {
                await socket.SendAsync(request);
                var got = 0;
                while (got < answer.Length)
                {
                    got += await socket.ReceiveAsync(answer.AsMemory(got));
                }
            }

            var perEcho = (double)(probe.End - probe.Start) / Measured;
            output.WriteLine($"loop thread allocations per echo, receive + write of a pooled buffer: {perEcho:0.0} bytes");

            // The transport itself (epoll_wait, read into a pooled buffer, sendmsg) allocates nothing; what remains is
            // DotNetty's: a Task per WriteAsync and the pooled allocator's thread cache bookkeeping. Anything more than
            // that would be a regression in this project's code.
            Assert.True(perEcho < PipelineAllowanceBytes, $"{perEcho:0.0} bytes per echo");
            await server.CloseAsync();
        }
        finally
        {
            await Task.WhenAll(boss.ShutdownGracefullyAsync(TimeSpan.Zero, TimeSpan.FromSeconds(5)), worker.ShutdownGracefullyAsync(TimeSpan.Zero, TimeSpan.FromSeconds(5)));
        }
    }

    // DotNetty 0.7.6's WriteAsync allocates its promise (a TaskCompletionSource and its Task): about 200 bytes.
    private const double PipelineAllowanceBytes = 400;

    private sealed class AllocationProbe(int startAt, int endAt) : ChannelHandlerAdapter
    {
        private int echoes;

        public long Start { get; private set; }

        public long End { get; private set; }

        public override bool IsSharable => true;

        public override void ChannelRead(IChannelHandlerContext context, object message)
        {
            echoes++;
            if (echoes == startAt)
            {
                Start = GC.GetAllocatedBytesForCurrentThread();
            }
            else if (echoes == endAt)
            {
                End = GC.GetAllocatedBytesForCurrentThread();
            }

            context.WriteAsync(message);
        }

        public override void ChannelReadComplete(IChannelHandlerContext context) => context.Flush();
    }
}
