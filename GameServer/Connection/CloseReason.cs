using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace GameServer.Connection;

/// <summary>How a connection ended. Exactly one per connection; the first cause recorded wins.</summary>
public enum CloseReason
{
    /// <summary>A read failed with ECONNRESET: the peer aborted, crashed, was killed or closed with unread data.</summary>
    PeerReset,

    /// <summary>End of stream (FIN) without a Goodbye.</summary>
    PeerClosed,

    /// <summary>A write failed with EPIPE: the peer had closed (FIN) and then reset what we sent after it.</summary>
    BrokenPipe,

    /// <summary>The client left with the Goodbye handshake.</summary>
    ClientGoodbye,

    /// <summary>The kernel gave up on the peer (keepalive or TCP_USER_TIMEOUT): ETIMEDOUT.</summary>
    TimedOut,

    /// <summary>The application heartbeat heard nothing for too long.</summary>
    HeartbeatTimeout,

    /// <summary>No Hello within the handshake timeout.</summary>
    HandshakeTimeout,

    /// <summary>A bad frame or message; an Error frame was sent first where possible.</summary>
    ProtocolError,

    /// <summary>The host is stopping; the client was told with Goodbye.</summary>
    ServerShutdown,

    /// <summary>The server aborted the connection on purpose (RST).</summary>
    Kicked,

    /// <summary>This side closed it gracefully on purpose: a graceful kick on the server, the user closing on a client.</summary>
    LocalClose,

    /// <summary>The peer did not read fast enough and stayed above the write high-water mark too long.</summary>
    SlowConsumer,

    /// <summary>The peer sent more frames or bytes per second than allowed.</summary>
    RateLimited,

    /// <summary>The server was at its connection limit.</summary>
    ServerFull,

    /// <summary>A fault of the server's own (an unhandled exception in a handler): the only reason logged as an error.</summary>
    InternalError,
}

/// <summary>
/// The close taxonomy in one place: wire names, which reasons are a normal way to leave, and the mapping from
/// socket errors to reasons. Classify on <see cref="SocketError"/>, never on exception messages.
/// </summary>
public static class CloseReasons
{
    private static readonly string[] Names =
    [
        "peer_reset", "peer_closed", "broken_pipe", "client_goodbye", "timed_out", "heartbeat_timeout",
        "handshake_timeout", "protocol_error", "server_shutdown", "kicked", "local_close", "slow_consumer",
        "rate_limited", "server_full", "internal_error",
    ];

    /// <summary>The snake_case name used in logs, metrics tags and Goodbye reasons.</summary>
    public static string ToName(this CloseReason reason) => Names[(int)reason];

    /// <summary>Parses a name produced by <see cref="ToName"/>.</summary>
    public static bool TryParse(string name, out CloseReason reason)
    {
        var index = Array.IndexOf(Names, name);
        reason = index < 0 ? default : (CloseReason)index;
        return index >= 0;
    }

    /// <summary>
    /// Reasons that are the server's own fault and deserve an error with a stack trace. Everything else is a peer
    /// leaving, misbehaving or the server acting on purpose: logged without a stack trace.
    /// </summary>
    public static bool IsServerFault(this CloseReason reason) => reason == CloseReason.InternalError;

    /// <summary>
    /// Maps a socket error to a reason. Linux sets ECONNRESET when an RST arrives on an established connection and
    /// EPIPE when it arrives after the peer's FIN (CLOSE_WAIT) or after our own shutdown, so ECONNRESET means the
    /// peer reset whichever call noticed it, and EPIPE means we wrote to a peer that had already closed. Windows
    /// reports the latter as WSAECONNABORTED on a send.
    /// </summary>
    public static CloseReason? FromSocketError(SocketError error, bool onWrite) => error switch
    {
        SocketError.ConnectionReset => CloseReason.PeerReset,
        SocketError.Shutdown => CloseReason.BrokenPipe, // EPIPE
        SocketError.ConnectionAborted => onWrite ? CloseReason.BrokenPipe : CloseReason.PeerReset,
        SocketError.TimedOut => CloseReason.TimedOut,
        SocketError.HostUnreachable or SocketError.NetworkUnreachable or SocketError.NetworkDown
            or SocketError.HostDown => CloseReason.TimedOut,
        _ => null,
    };

    /// <summary>
    /// The platform's own errno and text, as Linux prints it (<c>104: Connection reset by peer</c>).
    /// <see cref="SocketException.NativeErrorCode"/> is the errno on Linux and the WSA code on Windows.
    /// </summary>
    public static string DescribeErrno(int errno) => errno == 0
        ? "-"
        : $"{errno}: {Marshal.GetPInvokeErrorMessage(errno)}";
}
