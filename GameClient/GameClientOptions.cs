using GameProtocol;
using Transport.Epoll;

namespace GameClient;

/// <summary>Where and how a client connects.</summary>
public sealed class GameClientOptions
{
    public string Host { get; set; } = "127.0.0.1";

    public int Port { get; set; } = 7777;

    public string PlayerName { get; set; } = "player";

    public int MaxFrameBytes { get; set; } = Framing.DefaultMaxFrameBytes;

    public int ConnectTimeoutMs { get; set; } = 5000;

    /// <summary>How long Welcome, or the server's Goodbye answer, may take.</summary>
    public int ResponseTimeoutMs { get; set; } = 10000;

    /// <summary>How long a graceful close waits for the server's FIN after our write side is shut.</summary>
    public int DrainTimeoutMs { get; set; } = 5000;

    /// <summary>
    /// Find a dead server by the same rule as the server: Ping every announced heartbeat interval, give up after this
    /// many intervals without any frame from the server (<c>heartbeat_timeout</c>). 0 turns detection off.
    /// </summary>
    public int HeartbeatMisses { get; set; } = 3;

    /// <summary>Answer every server Ping with a Pong (turn off to play a peer that ignores heartbeats).</summary>
    public bool AnswerPings { get; set; } = true;

    /// <summary>
    /// <c>auto</c> (the default: epoll on Linux, sockets elsewhere), <c>sockets</c> (DotNetty's stock transport) or
    /// <c>epoll</c> (Transport.Epoll, Linux only: it half-closes, and reads nothing while reading is paused).
    /// </summary>
    public string Transport { get; set; } = "auto";

    /// <summary>Whether <see cref="Transport"/> comes to Transport.Epoll on this system.</summary>
    public bool UsesEpoll => EpollTransport.IsChosenBy(Transport);
}
