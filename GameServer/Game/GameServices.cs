using TcpConnections;
using GameServer.Hosting;
using GameServer.Options;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace GameServer.Game;

/// <summary>What a session handler needs from the host, gathered so the per-connection handler is cheap to create.</summary>
public sealed class GameServices
{
    public GameServices(
        IOptions<ServerOptions> server,
        IOptions<GameOptions> game,
        IOptions<HeartbeatOptions> heartbeat,
        RoomManager rooms,
        SessionStore sessions,
        ConnectionRegistry registry,
        GameServerMetrics metrics,
        TimeProvider time,
        ILogger<SessionHandler> logger,
        ILoggerFactory loggerFactory)
    {
        Metrics = metrics;
        Server = server.Value;
        Game = game.Value;
        Heartbeat = heartbeat.Value;
        Rooms = rooms;
        Sessions = sessions;
        Registry = registry;
        Time = time;
        Logger = logger;
        ConnectionLogger = loggerFactory.CreateLogger(GameServerHost.ConnectionLogCategory);
    }

    public ServerOptions Server { get; }

    public GameOptions Game { get; }

    public HeartbeatOptions Heartbeat { get; }

    public RoomManager Rooms { get; }

    public SessionStore Sessions { get; }

    public ConnectionRegistry Registry { get; }

    public GameServerMetrics Metrics { get; }

    public TimeProvider Time { get; }

    public ILogger Logger { get; }

    /// <summary>The connection handlers' category, as the host gives it to the handlers it adds itself.</summary>
    public ILogger ConnectionLogger { get; }
}
