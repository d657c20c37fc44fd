using Microsoft.Extensions.Logging;

namespace TcpConnections;

/// <summary>Every log message of this library, with its stable event id (1xxx), in one list.</summary>
internal static partial class ConnectionLog
{
    [LoggerMessage(EventId = 1000, Level = LogLevel.Debug, Message = "Connection {ConnectionId} opened from {RemoteEndPoint}")]
    public static partial void Opened(ILogger logger, string connectionId, string remoteEndPoint);

    [LoggerMessage(EventId = 1001, Level = LogLevel.Information,
        Message = "Connection {ConnectionId} from {RemoteEndPoint} closed: {Reason} (errno {Errno}) after {DurationMs} ms; frames in/out {FramesIn}/{FramesOut}, bytes in/out {BytesIn}/{BytesOut}; {Detail}")]
    public static partial void Closed(
        ILogger logger, string connectionId, string remoteEndPoint, string reason, string errno, long durationMs,
        long framesIn, long framesOut, long bytesIn, long bytesOut, string detail);

    [LoggerMessage(EventId = 1002, Level = LogLevel.Error, Message = "Connection {ConnectionId} from {RemoteEndPoint} closed by a server fault: {Reason}: {Detail}")]
    public static partial void ClosedByFault(ILogger logger, string connectionId, string remoteEndPoint, string reason, string? detail);

    [LoggerMessage(EventId = 1003, Level = LogLevel.Error, Message = "Unhandled exception in the pipeline of connection {ConnectionId}")]
    public static partial void HandlerFault(ILogger logger, Exception exception, string connectionId);

    [LoggerMessage(EventId = 1004, Level = LogLevel.Debug, Message = "Connection {ConnectionId} is already closing; ignored {ExceptionType}: {ExceptionMessage}")]
    public static partial void LateException(ILogger logger, string connectionId, string exceptionType, string exceptionMessage);

    [LoggerMessage(EventId = 1005, Level = LogLevel.Debug, Message = "Connection {ConnectionId} is {RemoteEndPoint} by the PROXY protocol v{Version} header from {ProxyEndPoint}")]
    public static partial void Proxied(ILogger logger, string connectionId, string remoteEndPoint, string proxyEndPoint, int version);

    [LoggerMessage(EventId = 1010, Level = LogLevel.Information, Message = "TCP_USER_TIMEOUT is unavailable on this platform; only keepalive and the heartbeat find dead peers while sending")]
    public static partial void UserTimeoutUnavailable(ILogger logger);

    [LoggerMessage(EventId = 1011, Level = LogLevel.Debug, Message = "TCP timeouts not applied: {Error}")]
    public static partial void TcpTimeoutsNotApplied(ILogger logger, System.Net.Sockets.SocketError error);

    [LoggerMessage(EventId = 1012, Level = LogLevel.Debug, Message = "Connection {Id}: no frame for {QuietMs} ms, but our output is backed up ({Pending} bytes queued in the channel, {NotSent} unsent in the kernel) and the peer's kernel answers (last ACK {LastAckMs} ms ago, {Probes} probes unanswered, {Retransmits} retransmissions): a slow reader, left to the slow-consumer policy")]
    public static partial void HeartbeatDeferred(ILogger logger, string id, long quietMs, long pending, long notSent, long lastAckMs, int probes, int retransmits);
}
