using DotNetty.Transport.Channels;
using GameProtocol.Pipeline;
using GameServer.Cluster;
using GameServer.Game;
using TcpConnections;

namespace GameServer.Hosting;

/// <summary>
/// The game's end of each connection's pipeline: what the host puts last before the tail, and the reason its
/// Goodbye gives when the host stops. One process (<see cref="SessionHandler"/>: the session ends with the server)
/// or a cluster gateway (<see cref="ClusterSessionHandler"/>: the client is told to reconnect and resume elsewhere).
/// </summary>
public interface ISessionHandlerFactory
{
    IChannelHandler Create();

    CloseReason ShutdownReason { get; }
}

public sealed class SessionHandlerFactory(GameServices services) : ISessionHandlerFactory
{
    public IChannelHandler Create() => new SessionHandler(services);

    public CloseReason ShutdownReason => CloseReason.ServerShutdown;
}

public sealed class ClusterSessionHandlerFactory(GameServices services, Gateway gateway) : ISessionHandlerFactory
{
    public IChannelHandler Create() => new ClusterSessionHandler(services, gateway);

    public CloseReason ShutdownReason => GameCloseReasons.Reconnect;
}

/// <summary>What <c>/readyz</c> answers: whether a load balancer should send work here, and why (not).</summary>
public interface IReadiness
{
    (bool Ready, string Reason) Readiness();
}
