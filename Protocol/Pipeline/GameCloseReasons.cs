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

    public static IReadOnlyList<CloseReason> All { get; } = [ClientGoodbye, HandshakeTimeout, ServerFull];

    /// <summary>Any reason a server or client of this game can record, by its name.</summary>
    public static bool TryParse(string name, out CloseReason reason) => CloseReason.TryParse(name, All, out reason);
}
