using Microsoft.Extensions.Logging;

namespace GameClient;

/// <summary>Every log message of the client library, with its stable event id, in one list (4xxx).</summary>
internal static partial class Log
{
    [LoggerMessage(EventId = 4000, Level = LogLevel.Error, Message = "Session {SessionId}: reliable seq {Seq} after {Last} from the server; ending the session")]
    public static partial void SequenceGap(ILogger logger, string sessionId, long seq, long last);

    [LoggerMessage(EventId = 4001, Level = LogLevel.Debug, Message = "Session {SessionId}: resume attempt {Attempt} failed: {Error}")]
    public static partial void ResumeAttemptFailed(ILogger logger, string sessionId, int attempt, string error);

    [LoggerMessage(EventId = 4002, Level = LogLevel.Error, Message = "Session {SessionId}: reconnecting failed: {Error}; the session ends")]
    public static partial void ReconnectFailed(ILogger logger, string sessionId, string error);

    [LoggerMessage(EventId = 4003, Level = LogLevel.Error, Message = "Session {SessionId}: a {Event} handler threw")]
    public static partial void HandlerFailed(ILogger logger, string sessionId, string @event, Exception exception);
}
