using System.Net;
using DotNetty.Buffers;
using DotNetty.Transport.Bootstrapping;
using DotNetty.Transport.Channels;
using DotNetty.Transport.Channels.Sockets;
using TcpConnections;
using GameServer.Tests.Infrastructure;
using Microsoft.Extensions.Logging.Abstractions;

namespace GameServer.Tests;

/// <summary>
/// The connection handlers lifted into a different DotNetty server, as docs/CLOSE-HANDLING.md shows: a frame echo
/// server with no game, no protocol messages and no host, built from the Connection folder alone.
/// </summary>
public class BareEchoServerTests
{
    [Fact]
    public async Task EchoServer_BuiltFromTheConnectionHandlersAlone_EchoesFramesAndClassifiesCloses()
    {
        var closed = new TaskCompletionSource<ConnectionClosedEvent>(TaskCreationOptions.RunContinuationsAsynchronously);
        var metrics = new ConnectionMetrics(new System.Diagnostics.Metrics.Meter("EchoTest"));
        var connection = new ConnectionHandler(new ConnectionOptions(), NullLogger.Instance, metrics);
        var tail = new ConnectionTailHandler();
        var group = new MultithreadEventLoopGroup(1);
        try
        {
            var bootstrap = new ServerBootstrap()
                .Group(group)
                .Channel<TcpServerSocketChannel>()
                .ChildHandler(new ActionChannelInitializer<IChannel>(ch =>
                {
                    ch.Pipeline.AddLast(connection);
                    ch.Pipeline.AddLast(new FrameDecoder(1024));
                    ch.Pipeline.AddLast(new FramePrepender(1024));
                    ch.Pipeline.AddLast(new FrameEcho(closed));
                    ch.Pipeline.AddLast(tail);
                }));
            var server = await bootstrap.BindAsync(IPAddress.Loopback, 0);
            var endPoint = (IPEndPoint)server.LocalAddress;

            using (var wire = await Wire.ConnectAsync(new IPEndPoint(IPAddress.Loopback, endPoint.Port)))
            {
                await wire.SendRawAsync([.. Wire.Frame([1, 2, 3]), .. Wire.Frame([4])]);
                var echoed = new byte[4 + 3 + 4 + 1];
                var read = 0;
                while (read < echoed.Length)
                {
                    read += await wire.Socket.ReceiveAsync(echoed.AsMemory(read));
                }

                Assert.Equal([0, 0, 0, 3, 1, 2, 3, 0, 0, 0, 1, 4], echoed);

                // A length over the limit: with no protocol to speak, the close is still classified and graceful.
                await wire.SendRawAsync([0, 0, 8, 0]);
                Assert.Equal(0, await wire.Socket.ReceiveAsync(new byte[16])); // FIN, not a reset
            }

            var evt = await closed.Task.WaitAsync(TimeSpan.FromSeconds(15));
            Assert.Equal(CloseReason.ProtocolError, evt.Reason);
            Assert.Equal(2, evt.FramesReceived);
            Assert.Equal(2, evt.FramesSent);
            Assert.Equal(0, metrics.ActiveCount);
            await server.CloseAsync();
        }
        finally
        {
            await group.ShutdownGracefullyAsync(TimeSpan.Zero, TimeSpan.FromSeconds(2));
        }
    }

    /// <summary>Echoes each frame's payload and hears about the close through the pipeline event.</summary>
    private sealed class FrameEcho(TaskCompletionSource<ConnectionClosedEvent> closed) : ChannelHandlerAdapter
    {
        public override void ChannelRead(IChannelHandlerContext context, object message) =>
            context.WriteAndFlushAsync((IByteBuffer)message);

        public override void UserEventTriggered(IChannelHandlerContext context, object evt)
        {
            if (evt is ConnectionClosedEvent closedEvent)
            {
                closed.TrySetResult(closedEvent);
            }

            context.FireUserEventTriggered(evt);
        }
    }
}
