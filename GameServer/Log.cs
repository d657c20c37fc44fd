using System.Net;
using Microsoft.Extensions.Logging;

namespace GameServer;

/// <summary>
/// Every log message of the server, with its stable event id, in one list: 2xxx hosting, 3xxx the game. The
/// connection library's own (1xxx) are in TcpConnections' ConnectionLog.
/// </summary>
internal static partial class Log
{
    [LoggerMessage(EventId = 2000, Level = LogLevel.Information, Message = "Game server listening on {EndPoint} ({Transport} transport, leak detection {LeakDetection})")]
    public static partial void Listening(ILogger logger, IPEndPoint endPoint, string transport, string leakDetection);

    [LoggerMessage(EventId = 2001, Level = LogLevel.Critical, Message = "Cannot listen on {Address}:{Port}: {Reason}")]
    public static partial void BindFailed(ILogger logger, string address, int port, string reason);

    [LoggerMessage(EventId = 2002, Level = LogLevel.Information, Message = "Stopping: saying Goodbye to {Count} connections")]
    public static partial void Stopping(ILogger logger, int count);

    [LoggerMessage(EventId = 2003, Level = LogLevel.Warning, Message = "{Count} connections did not finish the Goodbye handshake within {TimeoutMs} ms; aborting them")]
    public static partial void ShutdownTimeout(ILogger logger, int count, int timeoutMs);

    [LoggerMessage(EventId = 2004, Level = LogLevel.Information, Message = "Game server stopped")]
    public static partial void Stopped(ILogger logger);

    [LoggerMessage(EventId = 2005, Level = LogLevel.Warning, Message = "The event loops did not terminate within {TimeoutMs} ms; stopping without them")]
    public static partial void LoopsDidNotTerminate(ILogger logger, int timeoutMs);

    [LoggerMessage(EventId = 2010, Level = LogLevel.Information, Message = "Metrics and probes on {Address} (metrics, healthz, readyz)")]
    public static partial void MetricsListening(ILogger logger, Uri address);

    [LoggerMessage(EventId = 2011, Level = LogLevel.Information, Message = "Metrics and probes off (Metrics:Port = 0)")]
    public static partial void MetricsDisabled(ILogger logger);

    [LoggerMessage(EventId = 2012, Level = LogLevel.Information, Message = "Metrics also pushed over OTLP ({Protocol}) to {Endpoint} every {IntervalMs} ms")]
    public static partial void OtlpExporting(ILogger logger, string protocol, Uri endpoint, int intervalMs);

    [LoggerMessage(EventId = 3000, Level = LogLevel.Debug, Message = "Room ticker stopped")]
    public static partial void RoomTickerStopped(ILogger logger);

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
        Message = "Session {SessionId} ended ({Why}): {MessagesHandled} messages handled, last move seq {LastMoveSeq}; {ReceivedSeq} reliable received, {Buffered} unacknowledged dropped")]
    public static partial void SessionEnded(ILogger logger, string sessionId, string why, long messagesHandled, long lastMoveSeq, long receivedSeq, int buffered);

    [LoggerMessage(EventId = 3006, Level = LogLevel.Warning, Message = "Room {RoomId} with {Players} players does not fit a StateUpdate in {MaxFrameBytes} bytes; no update sent")]
    public static partial void RoomTooBig(ILogger logger, string roomId, int players, int maxFrameBytes);

    [LoggerMessage(EventId = 3007, Level = LogLevel.Information,
        Message = "Session {SessionId} resumed on connection {ConnectionId} after {AwayMs} ms: {Replayed} messages replayed (took over: {TakenOver})")]
    public static partial void SessionResumed(ILogger logger, string sessionId, string connectionId, int replayed, long awayMs, string takenOver);

    [LoggerMessage(EventId = 3008, Level = LogLevel.Information,
        Message = "Session {SessionId} kept after {Reason} for {WindowMs} ms, {Buffered} unacknowledged messages buffered")]
    public static partial void SessionKept(ILogger logger, string sessionId, string reason, int windowMs, int buffered);

    [LoggerMessage(EventId = 3009, Level = LogLevel.Debug, Message = "Session {SessionId} is away from room {RoomId}; its seat is kept")]
    public static partial void PlayerAway(ILogger logger, string sessionId, string roomId);

    [LoggerMessage(EventId = 3010, Level = LogLevel.Debug, Message = "Session {SessionId} is back in room {RoomId}")]
    public static partial void PlayerBack(ILogger logger, string sessionId, string roomId);

    [LoggerMessage(EventId = 3011, Level = LogLevel.Information, Message = "Resume refused on connection {ConnectionId}: {Code}: {Text}")]
    public static partial void ResumeRefused(ILogger logger, string connectionId, string code, string text);

    [LoggerMessage(EventId = 3012, Level = LogLevel.Warning,
        Message = "Session {SessionId} dropped unacknowledged messages up to seq {LostThrough} from its full replay buffer ({Count} messages, {Bytes} bytes): it can no longer resume")]
    public static partial void ReplayOverflow(ILogger logger, string sessionId, long lostThrough, int count, long bytes);

    [LoggerMessage(EventId = 4000, Level = LogLevel.Information, Message = "Cluster {Role}: cluster {ClusterId}, Redis {Redis}")]
    public static partial void ClusterRole(ILogger logger, string role, string clusterId, string redis);

    [LoggerMessage(EventId = 4001, Level = LogLevel.Information, Message = "Session {SessionId} opened for {PlayerName} on {ConnectionKey}")]
    public static partial void ClusterSessionOpened(ILogger logger, string sessionId, string playerName, string connectionKey);

    [LoggerMessage(EventId = 4002, Level = LogLevel.Information,
        Message = "Session {SessionId} resumed on {ConnectionKey}: {Replayed} messages replayed after {AwayMs} ms away (taken over from {TakenOver})")]
    public static partial void ClusterSessionResumed(ILogger logger, string sessionId, string connectionKey, int replayed, long awayMs, string takenOver);

    [LoggerMessage(EventId = 4003, Level = LogLevel.Information, Message = "Session {SessionId} kept for a resume after {Reason} on {ConnectionKey}")]
    public static partial void ClusterSessionKept(ILogger logger, string sessionId, string reason, string connectionKey);

    [LoggerMessage(EventId = 4004, Level = LogLevel.Information, Message = "Session {SessionId} ended: {Why}")]
    public static partial void ClusterSessionEnded(ILogger logger, string sessionId, string why);

    [LoggerMessage(EventId = 4005, Level = LogLevel.Information, Message = "Session {SessionId} lost its gateway connection {ConnectionKey}: {Why}")]
    public static partial void ClusterRouteLost(ILogger logger, string sessionId, string connectionKey, string why);

    [LoggerMessage(EventId = 4006, Level = LogLevel.Information, Message = "Room {RoomId} active on this silo ({Members} members from saved state)")]
    public static partial void ClusterRoomActivated(ILogger logger, string roomId, int members);

    [LoggerMessage(EventId = 4007, Level = LogLevel.Warning, Message = "Grain call for connection {ConnectionKey} failed ({Error}); retrying for up to {LeftMs} ms more")]
    public static partial void ClusterCallRetry(ILogger logger, string connectionKey, string error, long leftMs);

    [LoggerMessage(EventId = 4008, Level = LogLevel.Warning, Message = "Grain calls for connection {ConnectionKey} failed for {TimeoutMs} ms ({Error}); asking the client to reconnect")]
    public static partial void ClusterUnavailable(ILogger logger, string connectionKey, int timeoutMs, string error);

    [LoggerMessage(EventId = 4009, Level = LogLevel.Warning, Message = "Room {RoomId}: {Error}")]
    public static partial void ClusterRoomWarning(ILogger logger, string roomId, string error);

    [LoggerMessage(EventId = 4010, Level = LogLevel.Warning, Message = "Cannot reach the cluster yet (attempt {Attempt}): {Error}; retrying")]
    public static partial void ClusterConnectRetry(ILogger logger, int attempt, string error);

    [LoggerMessage(EventId = 4011, Level = LogLevel.Information, Message = "The cluster answers ({ElapsedMs} ms after joining): opening the game port")]
    public static partial void ClusterAnswering(ILogger logger, long elapsedMs);

    [LoggerMessage(EventId = 4012, Level = LogLevel.Warning,
        Message = "No connection to any silo is left: calling into the cluster so its grains can reach this gateway's players again")]
    public static partial void ClusterConnectionLost(ILogger logger);

    [LoggerMessage(EventId = 4013, Level = LogLevel.Information, Message = "Connected to the cluster again after {ElapsedMs} ms")]
    public static partial void ClusterConnectionBack(ILogger logger, long elapsedMs);
}
