using Microsoft.Extensions.Logging;

namespace GameServer.Connection;

/// <summary>Source-generated log messages with stable event ids (1xxx: connection life).</summary>
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
}
