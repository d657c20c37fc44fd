using System.Net;
using System.Net.Sockets;
using System.Threading.Channels;
using DotNetty.Transport.Bootstrapping;
using DotNetty.Buffers;
using DotNetty.Transport.Channels;
using DotNetty.Transport.Channels.Sockets;
using GameProtocol;
using GameProtocol.Pipeline;
using Microsoft.Extensions.Logging;
using TcpConnections;
using Transport.Epoll;

namespace GameClient;

/// <summary>
/// One connection to a game server, on the same connection library, framing and codec as the server; it ends through
/// the same <see cref="TcpConnection"/> close path. Connect
/// with <see cref="ConnectAsync"/>, read <see cref="Incoming"/>, send with <see cref="SendAsync"/>, and end it in any
/// <see cref="ClientCloseMode"/>; <see cref="Closed"/> tells what this side observed (EOF, reset, broken pipe).
/// </summary>
public sealed class GameConnection : IAsyncDisposable
{
    private static readonly Lazy<MultithreadEventLoopGroup> SharedGroup = new(() => new MultithreadEventLoopGroup(1));
    private static readonly Lazy<EpollEventLoopGroup> SharedEpollGroup = new(() => new EpollEventLoopGroup(1));

    private readonly IChannel channel;
    private readonly ClientHandler handler;
    private readonly GameClientOptions options;
    private readonly TcpConnection state;

    private GameConnection(IChannel channel, ClientHandler handler, GameClientOptions options)
    {
        this.channel = channel;
        this.handler = handler;
        this.options = options;
        state = TcpConnection.Of(channel);
    }

    /// <summary>The server's Welcome; null for a connection opened with <see cref="ConnectRawAsync"/> until Hello.</summary>
    public Welcome? Welcome { get; private set; }

    /// <summary>Everything the server sent (Pings included, after they were answered), in order.</summary>
    public ChannelReader<IMessage> Incoming => handler.Incoming;

    public long FramesReceived => state.FramesReceived;

    public long FramesSent => state.FramesSent;

    public EndPoint? LocalEndPoint => channel.LocalAddress;

    /// <summary>The DotNetty channel, for tests and tools that need to reach below the client API.</summary>
    public IChannel Channel => channel;

    /// <summary>Completes when the connection has ended, with what this side observed.</summary>
    public Task<ClientCloseReport> Closed => state.Closed.ContinueWith(
        t => new ClientCloseReport(
            t.Result.Reason, t.Result.Errno, t.Result.Detail, t.Result.FramesReceived, t.Result.FramesSent,
            handler.ServerGoodbye.IsCompletedSuccessfully ? handler.ServerGoodbye.Result : null, handler.ServerError),
        CancellationToken.None,
        TaskContinuationOptions.ExecuteSynchronously,
        TaskScheduler.Default);

    /// <summary>Connects and plays Hello → Welcome.</summary>
    public static Task<GameConnection> ConnectAsync(GameClientOptions options, ILogger? logger = null, CancellationToken cancellationToken = default) =>
        ConnectAsync(options, resumeToken: null, lastReceivedSeq: 0, logger, cancellationToken);

    /// <summary>
    /// Connects and plays Hello → Welcome; with <paramref name="resumeToken"/> (version 2) the Hello asks to resume
    /// that session, having received its reliable messages up to <paramref name="lastReceivedSeq"/>. A refusal throws
    /// <see cref="GameClientException"/> with the server's Error.
    /// </summary>
    public static async Task<GameConnection> ConnectAsync(
        GameClientOptions options, string? resumeToken, long lastReceivedSeq, ILogger? logger = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        var connection = await ConnectRawAsync(options, logger, cancellationToken);
        try
        {
            await connection.SendAsync(new Hello(options.ProtocolVersion, options.PlayerName, resumeToken, lastReceivedSeq));
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(options.ResponseTimeoutMs);
            var first = await connection.Incoming.ReadAsync(timeout.Token);
            connection.Welcome = first switch
            {
                Welcome welcome => welcome,
                Error error => throw new GameClientException($"the server refused the session: {error.Code}: {error.Message}") { Error = error },
                _ => throw new GameClientException($"expected Welcome, the server sent {first.GetType().Name}"),
            };
            await connection.RunOnLoopAsync(connection.StartHeartbeat);
            return connection;
        }
        catch (Exception ex) when (ex is ChannelClosedException or OperationCanceledException)
        {
            await connection.DisposeAsync();
            throw new GameClientException($"no Welcome from {options.Host}:{options.Port} within {options.ResponseTimeoutMs} ms", ex);
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }
    }

    /// <summary>Connects without Hello (for tests of what the server does before a session exists).</summary>
    public static async Task<GameConnection> ConnectRawAsync(GameClientOptions options, ILogger? logger = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        var handler = new ClientHandler(options);
        var connectionHandler = new ConnectionHandler(new ConnectionOptions { DrainTimeoutMs = options.DrainTimeoutMs }, logger);
        var tail = new ConnectionTailHandler(GameConnectionProtocol.Instance, logger);
        var bootstrap = new Bootstrap();
        if (options.Transport?.ToLowerInvariant() is not ("auto" or "sockets" or "epoll"))
        {
            throw new ArgumentException($"Transport must be 'auto', 'sockets' or 'epoll', not '{options.Transport}'", nameof(options));
        }

        if (options.UsesEpoll)
        {
            bootstrap.Group(SharedEpollGroup.Value).Channel<EpollSocketChannel>();
        }
        else
        {
            bootstrap.Group(SharedGroup.Value).Channel<TcpSocketChannel>();
        }

        IChannel? made = null; // the channel the bootstrap makes, to close if its connect fails
        bootstrap
            .Option(ChannelOption.TcpNodelay, true)
            .Option(ChannelOption.ConnectTimeout, TimeSpan.FromMilliseconds(options.ConnectTimeoutMs))
            .Handler(new ActionChannelInitializer<IChannel>(ch =>
            {
                made = ch;
                ch.Pipeline.AddLast("connection", connectionHandler);
                ch.Pipeline.AddLast("frame-decoder", new FrameDecoder(options.MaxFrameBytes));
                ch.Pipeline.AddLast("frame-prepender", new FramePrepender(options.MaxFrameBytes));
                ch.Pipeline.AddLast("message-codec", new MessageCodec());
                ch.Pipeline.AddLast("client", handler);
                ch.Pipeline.AddLast("tail", tail);
            }));

        IChannel channel;
        try
        {
            var addresses = IPAddress.TryParse(options.Host, out var ip) ? [ip] : await Dns.GetHostAddressesAsync(options.Host, cancellationToken);
            if (addresses.Length == 0)
            {
                throw new GameClientException($"cannot resolve {options.Host}");
            }

            // The connect is bounded by ConnectTimeout; it is not abandoned half-way, so no channel is left unowned.
            channel = await bootstrap.ConnectAsync(new IPEndPoint(addresses[0], options.Port));
        }
        catch (Exception ex) when (ex is SocketException or ConnectException or TimeoutException or DotNetty.Transport.Channels.ConnectTimeoutException)
        {
            var root = ex;
            while (root.InnerException is not null)
            {
                root = root.InnerException;
            }

            // DotNetty's stock channel stays open after a refused connect (its Bootstrap does not close on failure):
            // close it, or every failed attempt of a reconnecting client leaves a socket behind.
            if (made is { Open: true })
            {
                await made.CloseAsync();
            }

            throw new GameClientException($"cannot reach the server at {options.Host}:{options.Port}: {root.Message}", ex);
        }

        return new GameConnection(channel, handler, options);
    }

    public Task SendAsync(IMessage message) => OffTheLoop(channel.WriteAndFlushAsync(message));

    /// <summary>
    /// The event loop completes a write's task itself, and an await on it would go on right there, on the loop: a
    /// caller that sends in a loop (a flood, a bot) would then never give the loop back to read. The stock transport
    /// hid this by completing writes on .NET's I/O threads; the epoll transport completes them inline. So the
    /// caller's continuation always goes to the thread pool.
    /// </summary>
    private static async Task OffTheLoop(Task write) => await write.ConfigureAwait(ConfigureAwaitOptions.ForceYielding);

    /// <summary>
    /// Completes once everything written so far is in the kernel. A close (or a half-close) fails writes still queued
    /// in the channel, as Netty's does; the stock transport merely hid that by handing every write to .NET at once.
    /// </summary>
    private async Task FlushedAsync()
    {
        try
        {
            await channel.WriteAndFlushAsync(Unpooled.Empty);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // The connection already ended; the close report says how.
        }
    }

    /// <summary>Queues a message without flushing (batch several, then <see cref="Flush"/>).</summary>
    public Task WriteAsync(IMessage message) => OffTheLoop(channel.WriteAsync(message));

    public void Flush() => channel.Flush();

    /// <summary>
    /// The Goodbye handshake: send Goodbye with our count, wait for the server's Goodbye (its count of our frames)
    /// and its FIN. Returns the server's Goodbye; the caller compares its count with <see cref="FramesSent"/>.
    /// </summary>
    public async Task<Goodbye> GoodbyeAsync(string reason = "bye")
    {
        await RunOnLoopAsync(() =>
        {
            state.TrySetReason(GameCloseReasons.ClientGoodbye, reason);
            ClientHandler.StopHeartbeat(channel);
            handler.GoodbyeSent = true;
            _ = channel.WriteAndFlushAsync(new Goodbye(reason, state.FramesReceived));
        });

        Goodbye goodbye;
        try
        {
            goodbye = await handler.ServerGoodbye.WaitAsync(TimeSpan.FromMilliseconds(options.ResponseTimeoutMs));
        }
        catch (Exception ex) when (ex is TimeoutException or OperationCanceledException)
        {
            // No answer in time, or the connection ended without one: close what is left and say so.
            await state.CloseAsync(CloseReason.LocalClose, "no Goodbye answer");
            var report = await Closed;
            throw new GameClientException($"the server did not answer Goodbye ({report})", ex);
        }

        await WaitClosedOrCloseAsync();
        return goodbye;
    }

    /// <summary>Ends the connection in the given way and returns what this side observed.</summary>
    public async Task<ClientCloseReport> CloseAsync(ClientCloseMode mode)
    {
        switch (mode)
        {
            case ClientCloseMode.Goodbye:
                await GoodbyeAsync();
                break;
            case ClientCloseMode.Fin:
                // Recorded first: a server that closes while our last writes flush must not become the reason.
                await RunOnLoopAsync(() => state.TrySetReason(CloseReason.LocalClose, mode.ToName()));
                await FlushedAsync();
                await state.CloseAsync(CloseReason.LocalClose, mode.ToName());
                break;
            case ClientCloseMode.HalfClose:
                // The graceful close without a farewell: FIN after what was sent, reading on until the server's FIN.
                await RunOnLoopAsync(() => ClientHandler.StopHeartbeat(channel));
                await state.CloseGracefullyAsync(CloseReason.LocalClose, detail: mode.ToName());
                break;
            case ClientCloseMode.Abort:
                await state.AbortAsync(CloseReason.Aborted, mode.ToName());
                break;
            case ClientCloseMode.CloseWithUnread:
                await CloseWithUnreadAsync();
                break;
            case ClientCloseMode.Silent:
                // A hung client: no reads, no writes (its own heartbeat stops too), the socket stays open.
                await RunOnLoopAsync(() => ClientHandler.StopHeartbeat(channel));
                PauseReading();
                return await Closed;
            case ClientCloseMode.ExitWithoutClose:
                throw new NotSupportedException("exit-without-close ends the process; the bot does it with --close exit-without-close");
            default:
                throw new ArgumentOutOfRangeException(nameof(mode));
        }

        return await Closed;
    }

    /// <summary>Stops reading from the socket: what the server sends piles up in the kernel's receive buffer.</summary>
    public void PauseReading() => channel.Configuration.AutoRead = false;

    public void ResumeReading()
    {
        channel.Configuration.AutoRead = true;
        channel.Read();
    }

    /// <summary>
    /// Stops reading and waits (bounded) until data from the server sits unread in the kernel's receive buffer, as
    /// the close-with-unread cases need. DotNetty may still have one receive posted when reading pauses, and on a
    /// busy machine its completion can run tens of milliseconds late and then take everything the kernel held: a
    /// process that dies just after would send FIN, not RST. So data only counts as stuck once it has been seen at
    /// every look across a settle time, never shrinking, with no frame arriving.
    /// </summary>
    public async Task<bool> PauseReadingUntilUnreadAsync(TimeSpan timeout)
    {
        PauseReading();
        const int looks = 4;
        var between = TimeSpan.FromMilliseconds(40);
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline && channel.Active)
        {
            var frames = FramesReceived;
            var unread = UnreadBytesInKernel;
            var stuck = unread > 0;
            for (var look = 0; stuck && look < looks; look++)
            {
                await Task.Delay(between);
                var now = UnreadBytesInKernel;
                stuck = now >= unread && FramesReceived == frames;
                unread = now;
            }

            if (stuck)
            {
                return true;
            }

            await Task.Delay(5);
        }

        return false;
    }

    /// <summary>Bytes the kernel holds for us that nobody has read yet.</summary>
    public int UnreadBytesInKernel => SocketAccess.TryGetSocket(channel) is { } socket
        ? SafeAvailable(socket)
        : channel is EpollSocketChannel epoll ? epoll.UnreadBytes : 0;

    public async ValueTask DisposeAsync()
    {
        if (channel.Active)
        {
            await state.CloseAsync(CloseReason.LocalClose, "disposed");
        }
    }

    private void StartHeartbeat()
    {
        // On the event loop, so it cannot race a Goodbye that arrived right behind the Welcome.
        if (options.HeartbeatMisses <= 0 || Welcome is null || Welcome.HeartbeatIntervalMs <= 0
            || handler.GoodbyeSent || !channel.Active)
        {
            return;
        }

        var heartbeat = new HeartbeatOptions { IntervalMs = Welcome.HeartbeatIntervalMs, Misses = options.HeartbeatMisses };
        var time = TimeProvider.System;
        channel.Pipeline.AddBefore("client", "idle", new IdleDetector(heartbeat.Interval, TimeSpan.Zero, time));
        channel.Pipeline.AddBefore("client", "heartbeat", new HeartbeatHandler(heartbeat, GameConnectionProtocol.Instance, time));
    }

    private async Task CloseWithUnreadAsync()
    {
        await PauseReadingUntilUnreadAsync(TimeSpan.FromMilliseconds(options.ResponseTimeoutMs));

        await RunOnLoopAsync(() =>
        {
            // Closing the socket itself, without DotNetty's shutdown() first, lets the kernel's rule apply: unread data
            // turns the close into an RST. The connection then records and finishes the close as usual.
            SocketAccess.TryCloseWithoutShutdown(channel);
            _ = state.CloseAsync(CloseReason.LocalClose, ClientCloseMode.CloseWithUnread.ToName());
        });
    }

    private async Task WaitClosedOrCloseAsync()
    {
        try
        {
            await state.Closed.WaitAsync(TimeSpan.FromMilliseconds(options.DrainTimeoutMs));
        }
        catch (TimeoutException)
        {
            await state.CloseAsync(CloseReason.LocalClose, "no FIN from the server within the drain timeout");
        }
    }

    private Task RunOnLoopAsync(Action action)
    {
        if (channel.EventLoop.InEventLoop)
        {
            action();
            return Task.CompletedTask;
        }

        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        channel.EventLoop.Execute(() =>
        {
            try
            {
                action();
                done.SetResult();
            }
            catch (Exception ex)
            {
                done.SetException(ex);
            }
        });
        return done.Task;
    }

    private static int SafeAvailable(Socket socket)
    {
        try
        {
            return socket.Available;
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            return 0;
        }
    }
}
