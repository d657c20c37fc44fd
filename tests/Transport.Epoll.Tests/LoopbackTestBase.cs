using System.Net;
using System.Net.Sockets;
using DotNetty.Transport.Bootstrapping;
using DotNetty.Transport.Channels;

namespace Transport.Epoll.Tests;

/// <summary>An accept loop and worker loops per test, a listener on loopback, and plain sockets to reach it.</summary>
public abstract class LoopbackTestBase(int workerThreads) : IAsyncLifetime
{
    protected static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    protected EpollEventLoopGroup Boss { get; } = new(1);

    protected EpollEventLoopGroup Workers { get; } = new(workerThreads);

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        await Task.WhenAll(
            Boss.ShutdownGracefullyAsync(TimeSpan.Zero, TimeSpan.FromSeconds(5)),
            Workers.ShutdownGracefullyAsync(TimeSpan.Zero, TimeSpan.FromSeconds(5))).WaitAsync(Timeout);
    }

    protected async Task<IChannel> ListenAsync(Action<IChannel> init, bool halfClosure = false) =>
        await new ServerBootstrap()
            .Group(Boss, Workers)
            .Channel<EpollServerSocketChannel>()
            .ChildOption(ChannelOption.AllowHalfClosure, halfClosure)
            .ChildHandler(new ActionChannelInitializer<IChannel>(init))
            .BindAsync(new IPEndPoint(IPAddress.Loopback, 0))
            .WaitAsync(Timeout);

    protected static async Task<Socket> ConnectSocketAsync(IChannel server)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(server.LocalAddress).WaitAsync(Timeout);
        return socket;
    }
}
