using System.Net;
using DotNetty.Buffers;
using DotNetty.Transport.Bootstrapping;
using DotNetty.Transport.Channels;
using DotNetty.Transport.Channels.Sockets;
using GameServer.Connection;

namespace Bench;

/// <summary>
/// DotNetty's stock socket transport with the project's framing and nothing else: each frame is written back as it
/// is decoded and flushed once per read. What the transport and the framing cost, without MessagePack or the game.
/// </summary>
internal static class DotNettyFrameEchoServer
{
    private const int MaxFrameBytes = 65536;

    public static async Task RunAsync(int port, int workers, CancellationToken cancellationToken)
    {
        var boss = new MultithreadEventLoopGroup(1);
        var worker = new MultithreadEventLoopGroup(workers);
        try
        {
            var bootstrap = new ServerBootstrap()
                .Group(boss, worker)
                .Channel<TcpServerSocketChannel>()
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
