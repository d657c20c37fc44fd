using System.Net;
using DotNetty.Buffers;
using DotNetty.Common;
using DotNetty.Transport.Bootstrapping;
using DotNetty.Transport.Channels;
using DotNetty.Transport.Channels.Sockets;
using TcpConnections;
using Transport.Epoll;

namespace Bench;

/// <summary>
/// A DotNetty transport (the stock sockets one, or Transport.Epoll) with the project's framing and nothing else: each
/// frame is written back as it is decoded and flushed once per read. What the transport and the framing cost,
/// without MessagePack or the game.
/// </summary>
internal static class DotNettyFrameEchoServer
{
    private const int MaxFrameBytes = 65536;

    public static async Task RunAsync(int port, int workers, bool epoll, CancellationToken cancellationToken)
    {
        // As the game server runs by default (Server:LeakDetection): DotNetty's sampling leak detector captures a
        // stack trace for one buffer in 128, about 9 % of the CPU in a profile of this echo; the baselines have none.
        ResourceLeakDetector.Level = ResourceLeakDetector.DetectionLevel.Disabled;
        IEventLoopGroup boss = epoll ? new EpollEventLoopGroup(1) : new MultithreadEventLoopGroup(1);
        IEventLoopGroup worker = epoll ? new EpollEventLoopGroup(workers) : new MultithreadEventLoopGroup(workers);
        try
        {
            var bootstrap = new ServerBootstrap().Group(boss, worker);
            _ = epoll ? bootstrap.Channel<EpollServerSocketChannel>() : bootstrap.Channel<TcpServerSocketChannel>();
            bootstrap
                .Option(ChannelOption.SoBacklog, 4096)
                .ChildOption(ChannelOption.TcpNodelay, true)
                .ChildOption(ChannelOption.Allocator, PooledByteBufferAllocator.Default)
                .ChildHandler(new ActionChannelInitializer<IChannel>(channel => channel.Pipeline.AddLast(
                    new FrameDecoder(MaxFrameBytes), new FramePrepender(MaxFrameBytes), new FrameEchoHandler())));
            var listener = await bootstrap.BindAsync(new IPEndPoint(IPAddress.Loopback, port));
            Console.WriteLine($"listening on {port}");
            await Task.Delay(Timeout.Infinite, cancellationToken).ContinueWith(_ => { }, TaskScheduler.Default);
            await listener.CloseAsync();
        }
        finally
        {
            await Task.WhenAll(boss.ShutdownGracefullyAsync(TimeSpan.Zero, TimeSpan.FromSeconds(1)), worker.ShutdownGracefullyAsync(TimeSpan.Zero, TimeSpan.FromSeconds(1)));
        }
    }

    private sealed class FrameEchoHandler : ChannelHandlerAdapter
    {
        public override bool IsSharable => true;

        public override void ChannelRead(IChannelHandlerContext context, object message) => context.WriteAsync(message);

        public override void ChannelReadComplete(IChannelHandlerContext context) => context.Flush();

        public override void ExceptionCaught(IChannelHandlerContext context, Exception exception) => context.CloseAsync();
    }
}
