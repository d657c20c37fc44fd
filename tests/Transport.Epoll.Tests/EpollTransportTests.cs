using System.Net;
using System.Net.Sockets;
using System.Text;
using DotNetty.Buffers;
using DotNetty.Transport.Bootstrapping;
using DotNetty.Transport.Channels;
using DotNetty.Transport.Channels.Sockets;
using Transport.Epoll;

namespace Transport.Epoll.Tests;

/// <summary>
/// The transport against real sockets on loopback: the checklist of DotNetty's Libuv transport tests (echo,
/// gathering writes, AutoRead, peer close without read, reset, forcible close) plus what this transport adds:
/// half-closure both ways and errors that carry the errno.
/// </summary>
public sealed class EpollTransportTests() : LoopbackTestBase(workerThreads: 2)
{
    [Fact]
    public async Task Echo_OfAMegabyte_ComesBackByteForByte_ToAnEpollClient()
    {
        var server = await ListenAsync(ch => ch.Pipeline.AddLast(new EchoHandler()));
        var received = new MemoryStream();
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var payload = new byte[1 << 20];
        new Random(7).NextBytes(payload);

        var client = await new Bootstrap()
            .Group(Workers)
            .Channel<EpollSocketChannel>()
            .Option(ChannelOption.TcpNodelay, true)
            .Handler(new ActionChannelInitializer<IChannel>(ch => ch.Pipeline.AddLast(new Collect(received, payload.Length, done))))
            .ConnectAsync(server.LocalAddress)
            .WaitAsync(Timeout);

        // Many small writes flushed at once: the transport gathers them into one sendmsg.
        for (var offset = 0; offset < payload.Length; offset += 1000)
        {
            _ = client.WriteAsync(Unpooled.WrappedBuffer(payload, offset, Math.Min(1000, payload.Length - offset)));
        }

        client.Flush();
        await done.Task.WaitAsync(Timeout);
        Assert.Equal(payload, received.ToArray());
        await client.CloseAsync();
        await server.CloseAsync();
    }

    [Fact]
    public async Task PeerFin_WithAllowHalfClosure_FiresInputShutdown_AndTheServerCanStillAnswer()
    {
        var server = await ListenAsync(ch => ch.Pipeline.AddLast(new AnswerOnInputShutdown("bye")), halfClosure: true);
        using var socket = await ConnectSocketAsync(server);

        socket.Send("hello"u8);
        socket.Shutdown(SocketShutdown.Send); // FIN

        // The server saw the EOF as an event, not a close, and answered on its still-open output, then closed.
        Assert.Equal("bye", await ReadToEndAsync(socket));
        await server.CloseAsync();
    }

    [Fact]
    public async Task PeerFin_WithoutHalfClosure_ClosesTheChannel()
    {
        var closed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var server = await ListenAsync(ch => ch.CloseCompletion.ContinueWith(_ => closed.TrySetResult(), TaskScheduler.Default));
        using var socket = await ConnectSocketAsync(server);

        socket.Shutdown(SocketShutdown.Send);

        await closed.Task.WaitAsync(Timeout);
        Assert.Equal(0, await socket.ReceiveAsync(new byte[16]).WaitAsync(Timeout)); // and the server's FIN came back
        await server.CloseAsync();
    }

    [Fact]
    public async Task PeerReset_ReachesExceptionCaught_AsConnectionReset_WithErrno104()
    {
        var caught = new TaskCompletionSource<Exception>(TaskCreationOptions.RunContinuationsAsynchronously);
        var server = await ListenAsync(ch => ch.Pipeline.AddLast(new CatchHandler(caught)));
        using var socket = await ConnectSocketAsync(server);

        socket.LingerState = new LingerOption(true, 0);
        socket.Close(); // RST

        var error = Assert.IsType<EpollSocketException>(await caught.Task.WaitAsync(Timeout));
        Assert.Equal(SocketError.ConnectionReset, error.SocketErrorCode);
        Assert.Equal(104, error.NativeErrorCode);
        await server.CloseAsync();
    }

    [Fact]
    public async Task WritesAfterThePeerClosed_FailWithBrokenPipe_Errno32_AndReachExceptionCaught()
    {
        var caught = new TaskCompletionSource<Exception>(TaskCreationOptions.RunContinuationsAsynchronously);
        var accepted = new TaskCompletionSource<IChannel>(TaskCreationOptions.RunContinuationsAsynchronously);
        var server = await ListenAsync(
            ch =>
            {
                // Not reading: the server must not see the FIN, so that it goes on writing into the closed peer.
                ch.Configuration.AutoRead = false;
                ch.Pipeline.AddLast(new CatchHandler(caught));
                accepted.TrySetResult(ch);
            });
        using var socket = await ConnectSocketAsync(server);
        var channel = await accepted.Task.WaitAsync(Timeout);
        socket.Close(); // FIN; the first write after it draws a RST, the next one fails with EPIPE

        Exception? writeError = null;
        for (var i = 0; i < 50 && writeError is null; i++)
        {
            try
            {
                await channel.WriteAndFlushAsync(Unpooled.WrappedBuffer(new byte[64])).WaitAsync(Timeout);
                await Task.Delay(20);
            }
            catch (SocketException ex)
            {
                writeError = ex;
            }
        }

        var write = Assert.IsType<EpollSocketException>(writeError);
        Assert.Equal(32, write.NativeErrorCode);
        var seen = Assert.IsType<EpollSocketException>(await caught.Task.WaitAsync(Timeout));
        Assert.Equal(32, seen.NativeErrorCode); // the pipeline heard it too, not a bare ClosedChannelException
        await server.CloseAsync();
    }

    [Fact]
    public async Task AutoReadOff_LeavesDataInTheKernel_UntilReadIsCalled()
    {
        var reads = 0;
        var readOnce = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var accepted = new TaskCompletionSource<IChannel>(TaskCreationOptions.RunContinuationsAsynchronously);
        var server = await ListenAsync(
            ch =>
            {
                ch.Configuration.AutoRead = false;
                ch.Pipeline.AddLast(new OnRead(() =>
                {
                    Interlocked.Increment(ref reads);
                    readOnce.TrySetResult();
                }));
                accepted.TrySetResult(ch);
            });
        using var socket = await ConnectSocketAsync(server);
        var channel = await accepted.Task.WaitAsync(Timeout);

        socket.Send("unread"u8);
        await Task.Delay(300); // nothing to await: the point is that nothing happens
        Assert.Equal(0, Volatile.Read(ref reads));

        channel.Read();
        await readOnce.Task.WaitAsync(Timeout);
        Assert.Equal(1, Volatile.Read(ref reads));
        await server.CloseAsync();
    }

    [Fact]
    public async Task ShutdownOutput_SendsFin_AndTheChannelKeepsReading()
    {
        var received = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        var accepted = new TaskCompletionSource<EpollSocketChannel>(TaskCreationOptions.RunContinuationsAsynchronously);
        var server = await ListenAsync(
            ch =>
            {
                ch.Pipeline.AddLast(new OnReadText(received));
                accepted.TrySetResult((EpollSocketChannel)ch);
            });
        using var socket = await ConnectSocketAsync(server);
        var channel = await accepted.Task.WaitAsync(Timeout);

        await channel.ShutdownOutputAsync().WaitAsync(Timeout);
        Assert.True(channel.IsOutputShutdown);
        Assert.Equal(0, await socket.ReceiveAsync(new byte[16]).WaitAsync(Timeout)); // the FIN

        socket.Send("still heard"u8);
        Assert.Equal("still heard", await received.Task.WaitAsync(Timeout));
        await server.CloseAsync();
    }

    [Fact]
    public async Task LingerZero_Close_ResetsThePeer()
    {
        var accepted = new TaskCompletionSource<IChannel>(TaskCreationOptions.RunContinuationsAsynchronously);
        var server = await ListenAsync(ch => accepted.TrySetResult(ch));
        using var socket = await ConnectSocketAsync(server);
        var channel = await accepted.Task.WaitAsync(Timeout);

        channel.Configuration.SetOption(ChannelOption.SoLinger, 0);
        await channel.CloseAsync().WaitAsync(Timeout);

        var error = await Assert.ThrowsAsync<SocketException>(() => socket.ReceiveAsync(new byte[16]).WaitAsync(Timeout));
        Assert.Equal(SocketError.ConnectionReset, error.SocketErrorCode);
        await server.CloseAsync();
    }

    [Fact]
    public async Task Connect_ToAClosedPort_FailsWithConnectionRefused()
    {
        var port = FreePort();
        var error = await Assert.ThrowsAnyAsync<Exception>(() => new Bootstrap()
            .Group(Workers)
            .Channel<EpollSocketChannel>()
            .Handler(new ActionChannelInitializer<IChannel>(_ => { }))
            .ConnectAsync(new IPEndPoint(IPAddress.Loopback, port))
            .WaitAsync(Timeout));

        var socketError = Assert.IsType<EpollSocketException>(error is SocketException ? error : error.InnerException);
        Assert.Equal(SocketError.ConnectionRefused, socketError.SocketErrorCode);
    }

    [Fact]
    public async Task KeepaliveAndUserTimeout_AreSetOnTheSocket()
    {
        var accepted = new TaskCompletionSource<IChannel>(TaskCreationOptions.RunContinuationsAsynchronously);
        var server = await ListenAsync(ch => accepted.TrySetResult(ch));
        using var socket = await ConnectSocketAsync(server);
        var config = (await accepted.Task.WaitAsync(Timeout)).Configuration;

        config.SetOption(ChannelOption.SoKeepalive, true);
        config.SetOption(EpollChannelOption.TcpKeepIdle, 7);
        config.SetOption(EpollChannelOption.TcpUserTimeout, 1500);

        Assert.True(config.GetOption(ChannelOption.SoKeepalive));
        Assert.Equal(7, config.GetOption(EpollChannelOption.TcpKeepIdle));
        Assert.Equal(1500, config.GetOption(EpollChannelOption.TcpUserTimeout));
        await server.CloseAsync();
    }

    private static async Task<string> ReadToEndAsync(Socket socket)
    {
        var text = new StringBuilder();
        var buffer = new byte[256];
        int read;
        while ((read = await socket.ReceiveAsync(buffer.AsMemory()).AsTask().WaitAsync(Timeout)) > 0)
        {
            text.Append(Encoding.ASCII.GetString(buffer, 0, read));
        }

        return text.ToString();
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private sealed class EchoHandler : ChannelHandlerAdapter
    {
        public override void ChannelRead(IChannelHandlerContext context, object message) => context.WriteAsync(message);

        public override void ChannelReadComplete(IChannelHandlerContext context) => context.Flush();
    }

    private sealed class Collect(MemoryStream target, int expected, TaskCompletionSource done) : ChannelHandlerAdapter
    {
        public override void ChannelRead(IChannelHandlerContext context, object message)
        {
            var buffer = (IByteBuffer)message;
            var bytes = new byte[buffer.ReadableBytes];
            buffer.ReadBytes(bytes);
            buffer.Release();
            target.Write(bytes);
            if (target.Length >= expected)
            {
                done.TrySetResult();
            }
        }
    }

    private sealed class AnswerOnInputShutdown(string answer) : ChannelHandlerAdapter
    {
        public override void ChannelRead(IChannelHandlerContext context, object message) => ((IByteBuffer)message).Release();

        public override void UserEventTriggered(IChannelHandlerContext context, object evt)
        {
            if (evt is ChannelInputShutdownEvent)
            {
                context.WriteAndFlushAsync(Unpooled.WrappedBuffer(Encoding.ASCII.GetBytes(answer)))
                    .ContinueWith(_ => context.CloseAsync(), TaskScheduler.Default);
            }
        }
    }

    private sealed class CatchHandler(TaskCompletionSource<Exception> caught) : ChannelHandlerAdapter
    {
        public override void ChannelRead(IChannelHandlerContext context, object message) => ((IByteBuffer)message).Release();

        public override void ExceptionCaught(IChannelHandlerContext context, Exception exception) => caught.TrySetResult(exception);
    }

    private sealed class OnRead(Action onRead) : ChannelHandlerAdapter
    {
        public override void ChannelRead(IChannelHandlerContext context, object message)
        {
            ((IByteBuffer)message).Release();
            onRead();
        }
    }

    private sealed class OnReadText(TaskCompletionSource<string> received) : ChannelHandlerAdapter
    {
        public override void ChannelRead(IChannelHandlerContext context, object message)
        {
            var buffer = (IByteBuffer)message;
            received.TrySetResult(buffer.ToString(Encoding.ASCII));
            buffer.Release();
        }
    }
}
