using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;

namespace TcpConnections;

/// <summary>What a reason says about the end of a connection, which decides how it is logged.</summary>
public enum CloseKind
{
    /// <summary>An ordinary way to leave: a goodbye, a close asked for, a shutdown. Logged at Information.</summary>
    Normal,

    /// <summary>The peer vanished, misbehaved or was cut off by a limit: worth counting, not a fault here. Information.</summary>
    Abnormal,

    /// <summary>A fault of this process's own (an unhandled exception): logged as an error with its stack trace.</summary>
    Fault,
}

/// <summary>
/// How a connection ended: a snake_case name (used in logs, metric tags and farewell messages) and its
/// <see cref="CloseKind"/>. Exactly one per connection; the first recorded wins (<see cref="TcpConnection"/>).
/// The reasons here are what TCP and this library can tell on their own; an application adds its own words with
/// <see cref="Define"/> (a goodbye handshake, a handshake timeout, a full server). Two reasons are equal when their
/// names are.
/// </summary>
public sealed partial class CloseReason : IEquatable<CloseReason>
{
    private CloseReason(string name, CloseKind kind)
    {
        Name = name;
        Kind = kind;
    }

    /// <summary>A read failed with ECONNRESET: the peer aborted, crashed, was killed or closed with unread data.</summary>
    public static CloseReason PeerReset { get; } = new("peer_reset", CloseKind.Abnormal);

    /// <summary>End of stream (FIN), and nothing the application recorded first.</summary>
    public static CloseReason PeerClosed { get; } = new("peer_closed", CloseKind.Normal);

    /// <summary>A write failed with EPIPE: the peer had closed (FIN) and then reset what we sent after it.</summary>
    public static CloseReason BrokenPipe { get; } = new("broken_pipe", CloseKind.Abnormal);

    /// <summary>The kernel gave up on the peer (keepalive, TCP_USER_TIMEOUT, unreachable): ETIMEDOUT and kin.</summary>
    public static CloseReason TimedOut { get; } = new("timed_out", CloseKind.Abnormal);

    /// <summary>Nothing was read for too long and the idle policy gave up (no heartbeat protocol involved).</summary>
    public static CloseReason IdleTimeout { get; } = new("idle_timeout", CloseKind.Abnormal);

    /// <summary>The heartbeat heard nothing for too long: the peer is taken for dead.</summary>
    public static CloseReason HeartbeatTimeout { get; } = new("heartbeat_timeout", CloseKind.Abnormal);

    /// <summary>A bad frame or message; an error message was sent first where the protocol has one.</summary>
    public static CloseReason ProtocolError { get; } = new("protocol_error", CloseKind.Abnormal);

    /// <summary>This side closed it on purpose, gracefully (also any close asked for without a reason).</summary>
    public static CloseReason LocalClose { get; } = new("local_close", CloseKind.Normal);

    /// <summary>This side reset it on purpose (SO_LINGER 0): queued data discarded, the peer gets an RST.</summary>
    public static CloseReason Aborted { get; } = new("aborted", CloseKind.Abnormal);

    /// <summary>The peer did not read fast enough and stayed above the write high-water mark too long.</summary>
    public static CloseReason SlowConsumer { get; } = new("slow_consumer", CloseKind.Abnormal);

    /// <summary>The peer sent more frames or bytes per second than allowed.</summary>
    public static CloseReason RateLimited { get; } = new("rate_limited", CloseKind.Abnormal);

    /// <summary>An unhandled exception in a handler: the only core reason that is this process's fault.</summary>
    public static CloseReason InternalError { get; } = new("internal_error", CloseKind.Fault);

    /// <summary>The host is stopping; the peer was told where the protocol can say so.</summary>
    public static CloseReason ServerShutdown { get; } = new("server_shutdown", CloseKind.Normal);

    /// <summary>Every reason this library defines itself.</summary>
    public static IReadOnlyList<CloseReason> Core { get; } =
    [
        PeerReset, PeerClosed, BrokenPipe, TimedOut, IdleTimeout, HeartbeatTimeout, ProtocolError, LocalClose, Aborted,
        SlowConsumer, RateLimited, InternalError, ServerShutdown,
    ];

    /// <summary>The snake_case name used in logs, metric tags and farewell messages.</summary>
    public string Name { get; }

    public CloseKind Kind { get; }

    /// <summary>An ordinary way to leave (<see cref="CloseKind.Normal"/>).</summary>
    public bool IsNormal => Kind == CloseKind.Normal;

    /// <summary>This process's own fault (<see cref="CloseKind.Fault"/>): the close is logged as an error.</summary>
    public bool IsServerFault => Kind == CloseKind.Fault;

    /// <summary>
    /// An application's own reason. The name must be snake_case (lower-case letters, digits and underscores, starting
    /// with a letter, at most 64 characters) and must not be a core reason's: those mean what this library says.
    /// </summary>
    public static CloseReason Define(string name, CloseKind kind)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (!SnakeCase().IsMatch(name))
        {
            throw new ArgumentException($"a close reason's name must be snake_case (a-z, 0-9, _; at most 64 characters), not '{name}'", nameof(name));
        }

        if (Core.Any(c => c.Name == name))
        {
            throw new ArgumentException($"'{name}' is a core close reason; use CloseReason's own property", nameof(name));
        }

        return new CloseReason(name, kind);
    }

    /// <summary>Finds a reason by name among the core ones and <paramref name="extra"/> (an application's own).</summary>
    public static bool TryParse(string name, IEnumerable<CloseReason>? extra, out CloseReason reason)
    {
        reason = Core.Concat(extra ?? []).FirstOrDefault(r => r.Name == name)!;
        return reason is not null;
    }

    /// <summary>
    /// Maps a socket error to a reason. Linux sets ECONNRESET when an RST arrives on an established connection and
    /// EPIPE when it arrives after the peer's FIN (CLOSE_WAIT) or after our own shutdown, so ECONNRESET means the
    /// peer reset whichever call noticed it, and EPIPE means we wrote to a peer that had already closed. Windows
    /// reports the latter as WSAECONNABORTED on a send.
    /// </summary>
    public static CloseReason? FromSocketError(SocketError error, bool onWrite) => error switch
    {
        SocketError.ConnectionReset => PeerReset,
        SocketError.Shutdown => BrokenPipe, // EPIPE
        SocketError.ConnectionAborted => onWrite ? BrokenPipe : PeerReset,
        SocketError.TimedOut => TimedOut,
        SocketError.HostUnreachable or SocketError.NetworkUnreachable or SocketError.NetworkDown
            or SocketError.HostDown => TimedOut,
        _ => null,
    };

    /// <summary>
    /// The platform's own errno and text, as Linux prints it (<c>104: Connection reset by peer</c>).
    /// </summary>
    public static string DescribeErrno(int errno) => errno == 0
        ? "-"
        : $"{errno}: {Marshal.GetPInvokeErrorMessage(errno)}";

    public bool Equals(CloseReason? other) => other is not null && other.Name == Name;

    public override bool Equals(object? obj) => Equals(obj as CloseReason);

    public override int GetHashCode() => Name.GetHashCode(StringComparison.Ordinal);

    public override string ToString() => Name;

    public static bool operator ==(CloseReason? left, CloseReason? right) => left is null ? right is null : left.Equals(right);

    public static bool operator !=(CloseReason? left, CloseReason? right) => !(left == right);

    [GeneratedRegex("^[a-z][a-z0-9_]{0,63}$")]
    private static partial Regex SnakeCase();
}
