using DotNetty.Transport.Channels;

namespace TcpConnections;

/// <summary>
/// A transport capability: a connection whose two directions end separately (Netty's <c>DuplexChannel</c>, which
/// DotNetty 0.7.6 lacks). The close path half-closes through it and learns from it that the peer did, so it works
/// on any transport that offers it. Transport.Epoll's channel implements it; DotNetty's stock channel is reached
/// through its socket instead (<see cref="SocketAccess"/>).
/// </summary>
public interface IDuplexChannel : IChannel
{
    /// <summary>The peer's FIN has been read; with AllowHalfClosure the channel stays open for writing.</summary>
    bool IsInputShutdown { get; }

    /// <summary>Our FIN has been sent (or the channel is no longer active).</summary>
    bool IsOutputShutdown { get; }

    /// <summary>
    /// Sends FIN after what the kernel already holds; reading goes on. Writes still queued in the channel fail, so
    /// flush and wait for the flush first. Called on the channel's loop, the task is complete on return.
    /// </summary>
    Task ShutdownOutputAsync();
}
