using System.Net;
using DotNetty.Common;
using DotNetty.Transport.Bootstrapping;
using DotNetty.Transport.Channels;
using DotNetty.Transport.Channels.Sockets;
using Transport.Epoll;
using TcpConnections;
using GameProtocol.Pipeline;
using GameServer.Game;
using GameServer.Options;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace GameServer.Hosting;

/// <summary>
/// The DotNetty server as a hosted service: binds on start; on stop, stops accepting, says Goodbye to every
/// client, waits for the handshakes to finish (up to <c>Server:ShutdownTimeoutMs</c>), aborts what is left and
/// shuts the event loops down.
/// </summary>
public sealed class GameServerHost : IHostedService, IReadiness
{
    private readonly ServerOptions options;
    private readonly ISessionHandlerFactory sessions;
    private readonly GameServerMetrics metrics;
    private readonly ConnectionRegistry registry;
    private readonly ILoggerFactory loggerFactory;
    private readonly ILogger<GameServerHost> logger;
    private readonly TaskCompletionSource<IPEndPoint> listening = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly ConnectionHandler connectionHandler;
    private readonly ConnectionTailHandler tail;
    private readonly MessageCodec codec = new();
    private readonly FramePrepender prepender;
    private readonly TcpTimeoutsHandler tcpTimeouts;
    private readonly LimitsOptions limits;
    private readonly ConnectionLimitHandler connectionLimit;
    private readonly HeartbeatOptions heartbeat;
    private readonly TimeProvider time;
    private readonly ILogger connectionLogger;
    private readonly IReadOnlyList<IPNetwork> trustedProxies;
    private IEventLoopGroup? acceptGroup;
    private IEventLoopGroup? workerGroup;
    private IChannel? serverChannel;

    // Set once, as soon as the host begins to stop: readiness turns false before the first Goodbye is sent, so a load
    // balancer stops sending players here while the ones already here are still being said goodbye to.
    private volatile bool stopping;

    public GameServerHost(
        IOptions<ServerOptions> options,
        IOptions<ConnectionOptions> connectionOptions,
        ISessionHandlerFactory sessions,
        IOptions<TcpTimeoutOptions> tcpOptions,
        IOptions<HeartbeatOptions> heartbeat,
        IOptions<LimitsOptions> limits,
        GameServerMetrics metrics,
        ConnectionRegistry registry,
        TimeProvider time,
        IHostApplicationLifetime lifetime,
        ILoggerFactory loggerFactory)
    {
        ArgumentNullException.ThrowIfNull(lifetime);
        lifetime.ApplicationStopping.Register(() => stopping = true);
        this.heartbeat = heartbeat.Value;
        this.limits = limits.Value;
        connectionLimit = new ConnectionLimitHandler(this.limits.MaxConnections, GameCloseReasons.ServerFull, GameConnectionProtocol.Instance);
        this.time = time;
        this.options = options.Value;
        this.sessions = sessions;
        this.metrics = metrics;
        this.registry = registry;
        this.loggerFactory = loggerFactory;
        logger = loggerFactory.CreateLogger<GameServerHost>();
        connectionLogger = loggerFactory.CreateLogger(ConnectionLogCategory);
        trustedProxies = this.options.TrustedProxies;
        connectionHandler = new ConnectionHandler(connectionOptions.Value, connectionLogger, metrics.Connections);
        tail = new ConnectionTailHandler(GameConnectionProtocol.Instance, connectionLogger);
        prepender = new FramePrepender(this.options.MaxFrameBytes);
        tcpTimeouts = new TcpTimeoutsHandler(tcpOptions.Value, connectionLogger);

        // What an alert compares the active connections with, and what /readyz says, as series Prometheus keeps.
        metrics.Meter.CreateObservableGauge(
            "gameserver.connections.limit", () => this.limits.MaxConnections, description: "Limits:MaxConnections: connections beyond it are refused as server_full.");
        metrics.Meter.CreateObservableGauge(
            "gameserver.ready", () => Readiness().Ready ? 1 : 0, description: "1 when /readyz says ready: listening, not shutting down, under the connection cap.");
    }

    /// <summary>The log category of the connection library's lines (one per connection opened and closed).</summary>
    public const string ConnectionLogCategory = "GameServer.Connection";

    /// <summary>Completes with the bound endpoint once the server accepts connections (the real port when 0 was asked).</summary>
    public Task<IPEndPoint> Listening => listening.Task;

    /// <summary>
    /// Whether a load balancer should send new players here: listening, not shutting down, and under
    /// <c>Limits:MaxConnections</c> (a new connection there would only be refused as server_full). The reason says which.
    /// </summary>
    public (bool Ready, string Reason) Readiness()
    {
        if (stopping)
        {
            return (false, "shutting down");
        }

        if (serverChannel is not { Active: true })
        {
            return (false, "not listening");
        }

        var open = connectionLimit.Open;
        return open >= limits.MaxConnections
            ? (false, $"at the connection cap ({open} of {limits.MaxConnections})")
            : (true, $"ready ({open} of {limits.MaxConnections} connections)");
    }

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        // The metrics listeners were attached as the host built its meter provider, before this start.
        metrics.StartAtZero(GameCloseReasons.All);

        // DotNetty's own warnings (unknown options, leaked buffers) would otherwise go nowhere.
        DotNettyLogBridge.Attach(loggerFactory);
        ResourceLeakDetector.Level = options.LeakDetectionLevel;

        var bootstrap = new ServerBootstrap();
        if (options.UsesEpoll)
        {
            // Each loop thread waits in epoll_wait itself and does the socket work inline: no hop per read.
            acceptGroup = new EpollEventLoopGroup(options.AcceptThreads);
            workerGroup = new EpollEventLoopGroup(options.WorkerThreads == 0 ? Environment.ProcessorCount : options.WorkerThreads);
            bootstrap.Group(acceptGroup, workerGroup).Channel<EpollServerSocketChannel>();
        }
        else
        {
            acceptGroup = new MultithreadEventLoopGroup(options.AcceptThreads);
            workerGroup = options.WorkerThreads == 0 ? new MultithreadEventLoopGroup() : new MultithreadEventLoopGroup(options.WorkerThreads);
            bootstrap.Group(acceptGroup, workerGroup).Channel<TcpServerSocketChannel>();
        }

        bootstrap
            .Option(ChannelOption.SoBacklog, options.Backlog)
            .Option(ChannelOption.SoReuseaddr, true)
            .ChildOption(ChannelOption.TcpNodelay, true)

            // Only the epoll transport half-closes properly: a client's FIN then leaves our output open for the
            // Goodbye that proves what arrived. DotNetty's stock transport closes on EOF whatever this says.
            .ChildOption(ChannelOption.AllowHalfClosure, options.UsesEpoll)
            .ChildOption(ChannelOption.WriteBufferHighWaterMark, options.WriteBufferHighWaterMark)
            .ChildOption(ChannelOption.WriteBufferLowWaterMark, options.WriteBufferLowWaterMark)
            .ChildHandler(new ActionChannelInitializer<IChannel>(InitChannel));

        try
        {
            serverChannel = await bootstrap.BindAsync(IPAddress.Parse(options.Address), options.Port);
        }
        catch (Exception ex)
        {
            Log.BindFailed(logger, options.Address, options.Port, ex.Message);
            await ShutdownLoopsAsync();
            throw;
        }

        var bound = (IPEndPoint)serverChannel.LocalAddress;
        bound = new IPEndPoint(bound.Address.IsIPv4MappedToIPv6 ? bound.Address.MapToIPv4() : bound.Address, bound.Port);
        Log.Listening(logger, bound, options.UsesEpoll ? "epoll" : "sockets", options.LeakDetection);
        listening.TrySetResult(bound);
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        stopping = true;
        try
        {
            if (serverChannel is not null)
            {
                await serverChannel.CloseAsync();
            }

            var open = registry.Snapshot();
            Log.Stopping(logger, open.Count);
            var closes = open
                .Select(c => c.CloseGracefullyAsync(
                    sessions.ShutdownReason, s => GameConnectionProtocol.CreateGoodbye(sessions.ShutdownReason, s)))
                .ToArray();
            try
            {
                await Task.WhenAll(closes).WaitAsync(TimeSpan.FromMilliseconds(options.ShutdownTimeoutMs), CancellationToken.None);
            }
            catch (TimeoutException)
            {
                var left = registry.Snapshot();
                Log.ShutdownTimeout(logger, left.Count, options.ShutdownTimeoutMs);
                await Task.WhenAll(left.Select(c => c.AbortAsync(sessions.ShutdownReason)))
                    .WaitAsync(TimeSpan.FromSeconds(5), CancellationToken.None);
            }
        }
        catch (TimeoutException)
        {
            // Aborts that did not complete in time: the loops' shutdown below closes whatever is left.
        }
        finally
        {
            await ShutdownLoopsAsync();
            Log.Stopped(logger);
            DotNettyLogBridge.Detach(loggerFactory);
        }
    }

    /// <summary>
    /// The pipeline, from the socket up. The connection handler comes first (it sees every byte and every write and
    /// owns the close record), the tail last (every exception ends there, in the one close path).
    /// </summary>
    private void InitChannel(IChannel channel)
    {
        channel.Pipeline.AddLast("connection", connectionHandler);
        if (options.ProxyProtocol)
        {
            channel.Pipeline.AddLast("proxy-protocol", new ProxyProtocolDecoder(connectionLogger, trustedProxies));
        }

        channel.Pipeline.AddLast("frame-decoder", new FrameDecoder(options.MaxFrameBytes));
        channel.Pipeline.AddLast("frame-prepender", prepender);
        channel.Pipeline.AddLast("rate-limit", new RateLimitHandler(limits, GameConnectionProtocol.Instance, time));
        channel.Pipeline.AddLast("message-codec", codec);
        channel.Pipeline.AddLast("connection-limit", connectionLimit);
        channel.Pipeline.AddLast("slow-consumer", new SlowConsumerHandler(TimeSpan.FromMilliseconds(options.SlowConsumerTimeoutMs), time));
        channel.Pipeline.AddLast("tcp-timeouts", tcpTimeouts);
        channel.Pipeline.AddLast("idle", new IdleDetector(heartbeat.Interval, TimeSpan.Zero, time));
        channel.Pipeline.AddLast("session", sessions.Create());
        channel.Pipeline.AddLast("tail", tail);
    }

    private async Task ShutdownLoopsAsync()
    {
        var quiet = TimeSpan.Zero;
        var timeout = TimeSpan.FromSeconds(2);
        var terminated = Task.WhenAll(
            acceptGroup?.ShutdownGracefullyAsync(quiet, timeout) ?? Task.CompletedTask,
            workerGroup?.ShutdownGracefullyAsync(quiet, timeout) ?? Task.CompletedTask);

        // DotNetty 0.7.6's stock loop has been seen (once, in a hang dump) spinning in ConfirmShutdown after its
        // deadline, and the host's stop must not wait for it for ever: give it a grace beyond its own timeout.
        if (await Task.WhenAny(terminated, Task.Delay(timeout + LoopTerminationGrace)) != terminated)
        {
            Log.LoopsDidNotTerminate(logger, (int)(timeout + LoopTerminationGrace).TotalMilliseconds);
        }
    }

    private static readonly TimeSpan LoopTerminationGrace = TimeSpan.FromSeconds(3);
}
