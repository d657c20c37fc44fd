using System.Net;
using System.Net.Sockets;
using DotNetty.Transport.Channels;
using Tests.Shared;

namespace Transport.Conformance.Tests.Conformance;

/// <summary>Which end of the connection the transport under test is.</summary>
public enum Side
{
    /// <summary>The transport accepts; a plain .NET socket connects to it.</summary>
    Server,

    /// <summary>The transport connects; a plain .NET socket accepted the connection.</summary>
    Client,
}

/// <summary>
/// The differences between the transports that are there by design, each with its reason. A case consults these and
/// asserts the other behaviour for that transport; any difference not named here is a failure.
/// </summary>
public static class ByDesign
{
    /// <summary>DotNetty 0.7.6's socket channel closes on EOF whatever <c>AllowHalfClosure</c> says.</summary>
    public static bool StockClosesOnEof(TransportKind kind) => kind == TransportKind.Sockets;

    /// <summary>
    /// The stock channel has no half-close: .NET's <c>Shutdown(Send)</c> marks the socket disconnected and DotNetty
    /// then reads the next bytes as EOF. The project's handlers call shutdown(2) on its socket instead.
    /// </summary>
    public static bool StockHasNoHalfClose(TransportKind kind) => kind == TransportKind.Sockets;

    /// <summary>The stock channel's close calls <c>Shutdown(Both)</c> first, so SO_LINGER 0 gives FIN before RST.</summary>
    public static bool StockSendsFinBeforeReset(TransportKind kind) => kind == TransportKind.Sockets;

    /// <summary>
    /// A failed write on the stock channel fails only its task (the cause as the inner exception of a
    /// ClosedChannelException); <c>ExceptionCaught</c> never hears. The epoll channel also raises it in the pipeline.
    /// </summary>
    public static bool StockKeepsWriteErrorsFromThePipeline(TransportKind kind) => kind == TransportKind.Sockets;

    /// <summary>
    /// A refused connect fails the stock channel's connect and may leave the channel and its socket open (most runs;
    /// DotNetty's Bootstrap does not close on failure, as Netty's does); the epoll channel always closes itself.
    /// </summary>
    public static bool StockMayLeaveARefusedConnectOpen(TransportKind kind) => kind == TransportKind.Sockets;
}

/// <summary>One connection between a channel of the transport under test and a plain .NET socket, either way round.</summary>
public sealed class ChannelPair : IAsyncDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    private readonly IChannel? server;
    private readonly Socket? listener;

    private ChannelPair(IChannel channel, Socket peer, IChannel? server, Socket? listener)
    {
        Channel = channel;
        Peer = peer;
        this.server = server;
        this.listener = listener;
    }

    /// <summary>The transport's end.</summary>
    public IChannel Channel { get; }

    /// <summary>The plain socket's end.</summary>
    public Socket Peer { get; }

    public static async Task<ChannelPair> OpenAsync(
        TransportLoops loops,
        Side side,
        Action<IChannel> init,
        bool halfClosure = false,
        bool autoRead = true,
        int peerReceiveBuffer = 0,
        IPAddress? address = null)
    {
        address ??= IPAddress.Loopback;
        var socket = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        if (peerReceiveBuffer > 0)
        {
            socket.ReceiveBufferSize = peerReceiveBuffer; // before connect or listen, so the window is small from the start
        }

        if (side == Side.Server)
        {
            var accepted = new TaskCompletionSource<IChannel>(TaskCreationOptions.RunContinuationsAsynchronously);
            var server = await loops.ServerBootstrap()
                .ChildOption(ChannelOption.AllowHalfClosure, halfClosure)
                .ChildOption(ChannelOption.AutoRead, autoRead)
                .ChildHandler(new ActionChannelInitializer<IChannel>(ch =>
                {
                    init(ch);
                    accepted.TrySetResult(ch);
                }))
                .BindAsync(new IPEndPoint(address, 0))
                .WaitAsync(Timeout);
            // The stock listener is dual-mode IPv6 and reports a mapped address; the peer dials the family it was made for.
            await socket.ConnectAsync(new IPEndPoint(address, ((IPEndPoint)server.LocalAddress).Port)).WaitAsync(Timeout);
            return new ChannelPair(await accepted.Task.WaitAsync(Timeout), socket, server, null);
        }

        socket.Bind(new IPEndPoint(address, 0));
        socket.Listen(1);
        var channel = await loops.ClientBootstrap()
            .Option(ChannelOption.AllowHalfClosure, halfClosure)
            .Option(ChannelOption.AutoRead, autoRead)
            .Handler(new ActionChannelInitializer<IChannel>(init))
            .ConnectAsync(socket.LocalEndPoint!)
            .WaitAsync(Timeout);
        var peer = await socket.AcceptAsync().WaitAsync(Timeout);
        return new ChannelPair(channel, peer, null, socket);
    }

    public Task<byte[]> ReceiveExactlyAsync(int count) => SocketReads.ReceiveExactlyAsync(Peer, count, Timeout);

    public async ValueTask DisposeAsync()
    {
        Peer.Dispose();
        listener?.Dispose();
        await Channel.CloseAsync().WaitAsync(Timeout);
        if (server is not null)
        {
            await server.CloseAsync().WaitAsync(Timeout);
        }
    }
}
