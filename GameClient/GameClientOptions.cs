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

    /// <summary>
    /// The version a <see cref="GameConnection"/> says in Hello: 1 (the default: one connection is one session, what
    /// it reads is what the server sent) or 2 (the server numbers its reliable messages inside Reliable; the caller
    /// numbers its own). <see cref="GameSession"/> always speaks 2 and does the numbering itself.
    /// </summary>
    public int ProtocolVersion { get; set; } = Framing.ProtocolVersion1;

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

    /// <summary><see cref="GameSession"/>: reconnect and resume after a drop (0 turns it off: a drop ends the session).</summary>
    public int ReconnectAttempts { get; set; } = 10;

    /// <summary>The first reconnect waits up to this long; each further one doubles it, up to <see cref="ReconnectMaxDelayMs"/>.</summary>
    public int ReconnectBaseDelayMs { get; set; } = 100;

    /// <summary>The longest wait between reconnects (each wait is drawn at random between half of it and all of it).</summary>
    public int ReconnectMaxDelayMs { get; set; } = 5000;

    /// <summary>
    /// How long after a drop <see cref="GameSession"/> keeps trying; 0 means the window the server announced in Welcome
    /// (after it the server has dropped the session anyway).
    /// </summary>
    public int ResumeWindowMs { get; set; }

    /// <summary><see cref="GameSession"/>: the longest it holds back an acknowledgement hoping to piggyback it on a send.</summary>
    public int AckDelayMs { get; set; } = 50;

    /// <summary><see cref="GameSession"/>: acknowledge at once when this many reliable messages arrived unacknowledged.</summary>
    public int AckEveryMessages { get; set; } = 64;

    /// <summary><see cref="GameSession"/>: most own reliable messages kept unacknowledged; a send beyond it throws.</summary>
    public int MaxUnacknowledged { get; set; } = 10_000;

    /// <summary>
    /// <c>auto</c> (the default: epoll on Linux, sockets elsewhere), <c>sockets</c> (DotNetty's stock transport) or
    /// <c>epoll</c> (Transport.Epoll, Linux only: it half-closes, and reads nothing while reading is paused).
    /// </summary>
    public string Transport { get; set; } = "auto";

    /// <summary>A copy, so a session can speak its own version without changing the caller's options.</summary>
    public GameClientOptions Clone() => (GameClientOptions)MemberwiseClone();

    /// <summary>Whether <see cref="Transport"/> comes to Transport.Epoll on this system.</summary>
    public bool UsesEpoll => EpollTransport.IsChosenBy(Transport);
}
