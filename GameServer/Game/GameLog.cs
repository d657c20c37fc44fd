using Microsoft.Extensions.Logging;

namespace GameServer.Game;

/// <summary>Source-generated log messages of the game layer (3xxx).</summary>
internal static partial class GameLog
{
    [LoggerMessage(EventId = 3001, Level = LogLevel.Information, Message = "Session {SessionId} started for {PlayerName} on connection {ConnectionId}")]
    public static partial void SessionStarted(ILogger logger, string sessionId, string playerName, string connectionId);

    [LoggerMessage(EventId = 3002, Level = LogLevel.Debug, Message = "Session {SessionId} joined room {RoomId}")]
    public static partial void JoinedRoom(ILogger logger, string sessionId, string roomId);

    [LoggerMessage(EventId = 3003, Level = LogLevel.Information, Message = "Protocol error on connection {ConnectionId}: {Code}: {Text}")]
    public static partial void ProtocolError(ILogger logger, string connectionId, string code, string text);

    [LoggerMessage(EventId = 3004, Level = LogLevel.Information,
        Message = "Connection {ConnectionId}: peer's Goodbye ({PeerReason}) counts {PeerReceived} frames received of {Sent} sent")]
    public static partial void PeerGoodbye(ILogger logger, string connectionId, string peerReason, long peerReceived, long sent);

    [LoggerMessage(EventId = 3005, Level = LogLevel.Debug,
        Message = "Session {SessionId} ended: {MessagesHandled} messages handled, last move seq {LastMoveSeq}")]
    public static partial void SessionEnded(ILogger logger, string sessionId, long messagesHandled, long lastMoveSeq);
}
