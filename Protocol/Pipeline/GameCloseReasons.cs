using TcpConnections;

namespace GameProtocol.Pipeline;

/// <summary>
/// The game's own close reasons, beside the connection library's core ones (<see cref="CloseReason.Core"/>). Their
/// names are part of the protocol: they travel in Goodbye and Error frames and tag the close metrics.
/// </summary>
public static class GameCloseReasons
{
    /// <summary>The client left with the Goodbye handshake.</summary>
    public static CloseReason ClientGoodbye { get; } = CloseReason.Define("client_goodbye", CloseKind.Normal);

    /// <summary>No Hello within the handshake timeout.</summary>
    public static CloseReason HandshakeTimeout { get; } = CloseReason.Define("handshake_timeout", CloseKind.Abnormal);

    /// <summary>The server was at its connection limit.</summary>
    public static CloseReason ServerFull { get; } = CloseReason.Define("server_full", CloseKind.Abnormal);

    /// <summary>A resume of this connection's session arrived on another connection, which took the seat over.</summary>
    public static CloseReason SessionTakenOver { get; } = CloseReason.Define("session_taken_over", CloseKind.Normal);

    /// <summary>A Hello with a resume token was refused (the Error's code says why).</summary>
    public static CloseReason ResumeRefused { get; } = CloseReason.Define("resume_refused", CloseKind.Abnormal);

    /// <summary>Not a connection's: a session kept after a drop whose resume window passed without a resume.</summary>
    public static CloseReason ResumeExpired { get; } = CloseReason.Define("resume_expired", CloseKind.Abnormal);

    /// <summary>
    /// The server asks the client to reconnect and resume (its Goodbye carries this reason): a cluster gateway is
    /// stopping, or cannot reach the cluster, and the session lives on in the cluster for its resume window.
    /// </summary>
    public static CloseReason Reconnect { get; } = CloseReason.Define("reconnect", CloseKind.Normal);

    public static IReadOnlyList<CloseReason> All { get; } =
        [ClientGoodbye, HandshakeTimeout, ServerFull, SessionTakenOver, ResumeRefused, ResumeExpired, Reconnect];

    /// <summary>
    /// Closes the peer's side can cause: after one of these a version 2 session is kept for its resume window. A
    /// Goodbye, a protocol error, a limit, a kick or the server's shutdown end the session at once. A cluster gateway's
    /// <see cref="Reconnect"/> keeps it too: the client was told to come back.
    /// </summary>
    public static bool IsResumable(CloseReason? reason) =>
        reason == CloseReason.PeerReset || reason == CloseReason.PeerClosed || reason == CloseReason.BrokenPipe
        || reason == CloseReason.TimedOut || reason == CloseReason.HeartbeatTimeout || reason == Reconnect;

    /// <summary>Any reason a server or client of this game can record, by its name.</summary>
    public static bool TryParse(string name, out CloseReason reason) => CloseReason.TryParse(name, All, out reason);
}
