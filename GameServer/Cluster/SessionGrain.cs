using System.Buffers.Text;
using System.Security.Cryptography;
using GameProtocol;
using GameProtocol.Pipeline;
using GameServer.Options;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using TcpConnections;

namespace GameServer.Cluster;

/// <summary>A session grain's saved state: everything a resume needs, on any silo.</summary>
[GenerateSerializer]
[Alias("gs.SessionState")]
public sealed class SessionState
{
    [Id(0)] public SessionPhase Phase { get; set; }

    [Id(1)] public string PlayerName { get; set; } = string.Empty;

    [Id(2)] public string Token { get; set; } = string.Empty;

    /// <summary>The token before the last resume, honoured until the client proves it got the new one.</summary>
    [Id(3)] public string? PreviousToken { get; set; }

    /// <summary>Tokens used up, most recent last, so a late resume with one is told so (bounded).</summary>
    [Id(4)] public List<string> UsedTokens { get; set; } = [];

    [Id(5)] public long LastSentSeq { get; set; }

    [Id(6)] public long LastReceivedSeq { get; set; }

    /// <summary>The highest sequence number the client acknowledged.</summary>
    [Id(7)] public long AckedThrough { get; set; }

    /// <summary>Unacknowledged reliable messages, oldest first, as they went out.</summary>
    [Id(8)] public List<Frame> Replay { get; set; } = [];

    /// <summary>The highest sequence number evicted by the caps before the client acknowledged it.</summary>
    [Id(9)] public long LostThrough { get; set; }

    [Id(10)] public string? Room { get; set; }

    /// <summary>The connection that carries the session (attached only).</summary>
    [Id(11)] public Route? Route { get; set; }

    [Id(12)] public long DetachedAtUnixMs { get; set; }

    /// <summary>What a resume of an ended session is told (resume_ended, resume_expired, resume_gap).</summary>
    [Id(13)] public string EndCode { get; set; } = string.Empty;

    [Id(14)] public bool Confirmed { get; set; }

    [Id(15)] public StreamProgress? Stream { get; set; }

    [Id(16)] public long EndedAtUnixMs { get; set; }

    [Id(17)] public int ProtocolVersion { get; set; }

    /// <summary>The connection that carried the session until it was taken for lost (detached only).</summary>
    [Id(18)] public string? LastConnectionKey { get; set; }

    /// <summary>
    /// The newest Move handled, and its inbound sequence number: saved with the session, so a room that lost it (a
    /// one-way call lost with a silo, or a room back from an older save) gets it again from here.
    /// </summary>
    [Id(19)] public float X { get; set; }

    [Id(20)] public float Y { get; set; }

    [Id(21)] public long MoveSeq { get; set; }

    [Id(22)] public long MoveOrder { get; set; }

    /// <summary>The newest Presence version taken per other member (a room's retry may repeat one, or let two cross).</summary>
    [Id(23)] public Dictionary<string, long> PresenceSeen { get; set; } = [];

    /// <summary>Version 2: the client numbers, acknowledges and may resume. Version 1: the gateway does the numbering for it.</summary>
    public bool Sequenced => ProtocolVersion >= Framing.ProtocolVersion2;

    public long ReplayBytes => Replay.Sum(f => (long)f.Payload.Length);
}

public enum SessionPhase
{
    /// <summary>No such session (never opened, or forgotten after it ended).</summary>
    None,
    Attached,
    Detached,
    Ended,
}

/// <summary>A running StreamRequest: what was asked and how far it got.</summary>
[GenerateSerializer]
[Alias("gs.StreamProgress")]
public sealed class StreamProgress
{
    [Id(0)] public int Count { get; set; }

    [Id(1)] public int PayloadBytes { get; set; }

    [Id(2)] public int IntervalMs { get; set; }

    [Id(3)] public int Next { get; set; }
}

/// <summary>
/// One player's session in the cluster: the same rules as <see cref="Game.SessionStore"/> and
/// <see cref="Game.PlayerSession"/> (tokens rotated on each resume, the previous one honoured until the client proves
/// it has the new one, both directions numbered, a gap refused, unacknowledged messages replayed), kept in one grain.
/// Rule: the state is saved before anything that depends on it leaves the grain, so an acknowledgement or a reliable
/// message a client has seen is never forgotten when a silo dies; the grain comes back on another silo from Redis.
/// </summary>
public sealed class SessionGrain : Grain, ISessionGrain
{
    private const int TokenBytes = 24;
    private const int UsedTokensKept = 8;
    private const int MaxPlayerNameLength = 32;
    private const int StreamItemsPerTurn = 256;

    private readonly IPersistentState<SessionState> saved;
    private readonly SessionOptions sessionOptions;
    private readonly GameOptions game;
    private readonly ServerOptions server;
    private readonly ClusterModeOptions cluster;
    private readonly TimeProvider time;
    private readonly ILogger<SessionGrain> logger;
    private readonly List<Frame> outbox = [];
    private IGrainTimer? expiry;
    private IGrainTimer? routeCheck;
    private IGrainTimer? streamTimer;
    private IGrainTimer? retransmit;
    private long lastProgressAt;
    private bool acksUnsaved;
    private bool moved;
    private int routeCheckFailures;

    public SessionGrain(
        [PersistentState("session", ClusterNames.Storage)] IPersistentState<SessionState> saved,
        IOptions<SessionOptions> sessionOptions,
        IOptions<GameOptions> game,
        IOptions<ServerOptions> server,
        IOptions<ClusterModeOptions> cluster,
        TimeProvider time,
        ILogger<SessionGrain> logger)
    {
        this.saved = saved;
        this.sessionOptions = sessionOptions.Value;
        this.game = game.Value;
        this.server = server.Value;
        this.cluster = cluster.Value;
        this.time = time;
        this.logger = logger;
    }

    private SessionState S => saved.State;

    private string SessionId => this.GetPrimaryKeyString();

    private long Now => time.GetUtcNow().ToUnixTimeMilliseconds();

    public override Task OnActivateAsync(CancellationToken cancellationToken)
    {
        // Back from saved state (a silo died, or the grain was collected): the timers that belong to its phase run again.
        switch (S.Phase)
        {
            case SessionPhase.Attached:
                StartAttachedTimers();
                if (S.Stream is not null)
                {
                    StartStreamTimer();
                }

                break;
            case SessionPhase.Detached:
                StartExpiry(TimeSpan.FromMilliseconds(Math.Max(0, S.DetachedAtUnixMs + sessionOptions.ResumeWindowMs - Now)));
                if (S.Stream is not null)
                {
                    StartStreamTimer();
                }

                break;
            case SessionPhase.Ended:
                StartForget();
                break;
        }

        return Task.CompletedTask;
    }

    public Task<SessionReply> Open(string playerName, int protocolVersion, Route route, int heartbeatIntervalMs) =>
        Guard(() => OpenCore(playerName, protocolVersion, route, heartbeatIntervalMs));

    public Task<SessionReply> Resume(string token, long clientHas, Route route, int heartbeatIntervalMs) =>
        Guard(() => ResumeCore(token, clientHas, route, heartbeatIntervalMs));

    public Task<SessionReply> Receive(string connectionKey, Inbound[] messages) => Guard(() => ReceiveCore(connectionKey, messages));

    public Task Dropped(string connectionKey, string reason) => Guard(() => DroppedCore(connectionKey, reason));

    public Task End(string connectionKey, string reason) => Guard(() => EndCore(connectionKey, reason));

    public Task Notify(string aboutSessionId, long version, byte[] message) => Guard(() => NotifyCore(aboutSessionId, version, message));

    public Task RefreshRoute(string roomId) => Guard(() => RefreshRouteCore(roomId));

    private async Task<SessionReply> OpenCore(string playerName, int protocolVersion, Route route, int heartbeatIntervalMs)
    {
        if (S.Phase == SessionPhase.Attached && S.Route?.ConnectionKey == route.ConnectionKey)
        {
            return Welcome(heartbeatIntervalMs, resumed: false); // a retried call whose first answer was lost
        }

        if (S.Phase != SessionPhase.None)
        {
            return SessionReply.Fail(ProtocolErrorCodes.InvalidArgument, "this session id is taken");
        }

        if (string.IsNullOrWhiteSpace(playerName) || playerName.Length > MaxPlayerNameLength)
        {
            return SessionReply.Fail(ProtocolErrorCodes.InvalidArgument, $"playerName must be 1 to {MaxPlayerNameLength} characters");
        }

        S.Phase = SessionPhase.Attached;
        S.PlayerName = playerName;
        S.ProtocolVersion = protocolVersion;
        S.Token = S.Sequenced && sessionOptions.ResumeEnabled ? NewToken() : string.Empty;
        S.Route = route;
        S.Confirmed = true;
        await saved.WriteStateAsync();
        StartAttachedTimers();
        Log.ClusterSessionOpened(logger, SessionId, playerName, route.ConnectionKey);
        return Welcome(heartbeatIntervalMs, resumed: false);
    }

    private async Task<SessionReply> ResumeCore(string token, long clientHas, Route route, int heartbeatIntervalMs)
    {
        if (S.Phase == SessionPhase.Attached && S.Route?.ConnectionKey == route.ConnectionKey && token == S.PreviousToken)
        {
            // A retried call whose first answer was lost (perhaps after the save, before the room heard of it).
            var again = await ResumedReply(clientHas, heartbeatIntervalMs);
            if (S.Room is { } seat)
            {
                await RoomOf(seat).SetRoute(SessionId, route);
            }

            return again;
        }

        switch (S.Phase)
        {
            case SessionPhase.None:
                DeactivateOnIdle(); // nothing to keep in memory for a token nobody holds
                return Refuse(ProtocolErrorCodes.ResumeUnknown);
            case SessionPhase.Ended:
                return Refuse(S.EndCode.Length > 0 ? S.EndCode : ProtocolErrorCodes.ResumeEnded);
        }

        if (S.Phase == SessionPhase.Detached && Now - S.DetachedAtUnixMs > sessionOptions.ResumeWindowMs)
        {
            // Back on another silo after its window passed, before its expiry timer ran: too late all the same.
            await EndAsync(ProtocolErrorCodes.ResumeExpired, GameCloseReasons.ResumeExpired.Name);
            return Refuse(ProtocolErrorCodes.ResumeExpired);
        }

        var usingPrevious = token == S.PreviousToken;
        if (token != S.Token && !usingPrevious)
        {
            return Refuse(S.UsedTokens.Contains(token) ? ProtocolErrorCodes.ResumeTokenUsed : ProtocolErrorCodes.ResumeUnknown);
        }

        if (usingPrevious && S.Phase == SessionPhase.Attached && await RouteAliveAsync(S.Route!))
        {
            // The losing side of a race: the resume connection lives. (Unlike one process, a cluster may not yet know
            // that it died with its gateway; then the client lost that resume's Welcome and may use the token again.)
            return Refuse(ProtocolErrorCodes.ResumeTokenUsed);
        }

        if (clientHas < 0 || clientHas > S.LastSentSeq)
        {
            return Refuse(ProtocolErrorCodes.InvalidArgument, $"lastReceivedSeq {clientHas}, but the session sent {S.LastSentSeq} reliable messages");
        }

        if (clientHas < S.LostThrough || clientHas < S.AckedThrough)
        {
            var lost = S.LostThrough;
            if (S.Phase == SessionPhase.Detached)
            {
                await EndAsync(ProtocolErrorCodes.ResumeGap, "resume_gap"); // no resume can ever fill the hole
            }

            return Refuse(
                ProtocolErrorCodes.ResumeGap,
                $"the client has reliable messages up to {clientHas}, but those up to {Math.Max(lost, S.AckedThrough)} are gone from the buffer");
        }

        var awayMs = S.Phase == SessionPhase.Detached ? Now - S.DetachedAtUnixMs : 0;
        var previous = S.Phase == SessionPhase.Attached ? S.Route : null;
        Forget(usingPrevious ? S.Token : S.PreviousToken);
        S.PreviousToken = token;
        S.Token = NewToken();
        S.Confirmed = false;
        S.Phase = SessionPhase.Attached;
        S.Route = route;
        S.LastConnectionKey = null;
        S.DetachedAtUnixMs = 0;
        Trim(clientHas);
        await saved.WriteStateAsync();

        StopTimer(ref expiry);
        StartAttachedTimers();
        if (S.Stream is not null && streamTimer is null)
        {
            StartStreamTimer();
        }

        if (previous is not null && previous.ConnectionKey != route.ConnectionKey)
        {
            _ = previous.Gateway.Close(previous.ConnectionKey, GameCloseReasons.SessionTakenOver.Name, $"session {SessionId} resumed on {route.ConnectionKey}");
        }

        var reply = await ResumedReply(clientHas, heartbeatIntervalMs);
        if (S.Room is { } room)
        {
            await RoomOf(room).SetRoute(SessionId, route); // says "back" to the others if they were told "away"
        }

        var replayed = reply.Frames.Count(f => f.Seq > 0);
        Log.ClusterSessionResumed(logger, SessionId, route.ConnectionKey, replayed, awayMs, previous?.ConnectionKey ?? "-");
        return reply with { AwayMs = awayMs, Replayed = replayed, TookOver = previous is not null && previous.ConnectionKey != route.ConnectionKey };
    }

    private async Task<SessionReply> ReceiveCore(string connectionKey, Inbound[] messages)
    {
        if (S.Phase == SessionPhase.Ended)
        {
            return SessionReply.Fail(S.EndCode.Length > 0 ? S.EndCode : ProtocolErrorCodes.ResumeEnded, "the session has ended");
        }

        if (S.Phase == SessionPhase.Detached && S.LastConnectionKey == connectionKey)
        {
            // Taken for lost (its gateway did not answer a route check) while it lives: the client is asked to come back
            // through the resume, which replays what it lacks; nothing from this connection counts any more.
            return new SessionReply(string.Empty, string.Empty, SessionId, [], 0, Reconnect: true);
        }

        if (S.Phase != SessionPhase.Attached || S.Route?.ConnectionKey != connectionKey)
        {
            // Taken over by a resume elsewhere: nothing from this connection counts any more.
            return new SessionReply(string.Empty, string.Empty, SessionId, [], 0, TakenOver: "the session is carried by another connection now");
        }

        var receivedBefore = S.LastReceivedSeq;
        moved = false;
        var sentBefore = S.LastSentSeq;
        var roomBefore = S.Room;
        var streamBefore = S.Stream;
        var confirmedBefore = S.Confirmed;
        if (!S.Confirmed)
        {
            // Any frame after a resume's Welcome proves the client has the new token: the old one retires.
            S.Confirmed = true;
            Forget(S.PreviousToken);
            S.PreviousToken = null;
        }

        try
        {
            foreach (var inbound in messages)
            {
                if (inbound.Ack < 0 || inbound.Ack > S.LastSentSeq)
                {
                    throw new ProtocolViolationException(ProtocolErrorCodes.BadSequence, $"ack {inbound.Ack} of reliable messages, but {S.LastSentSeq} were sent");
                }

                Trim(inbound.Ack);
                if (inbound.Message is null || inbound.Seq <= S.LastReceivedSeq)
                {
                    continue; // a bare Ack, or a resend of one handled before
                }

                if (inbound.Seq != S.LastReceivedSeq + 1)
                {
                    throw new ProtocolViolationException(ProtocolErrorCodes.BadSequence, $"reliable seq {inbound.Seq} after {S.LastReceivedSeq}: a gap");
                }

                S.LastReceivedSeq = inbound.Seq;
                await HandleAsync(ProtocolSerializer.Deserialize(inbound.Message), inbound.Seq);
            }

            if (moved)
            {
                TellRoomPosition();
            }
        }
        catch (ProtocolViolationException violation)
        {
            outbox.Clear();
            await EndAsync(ProtocolErrorCodes.ResumeEnded, $"{CloseReason.ProtocolError.Name}: {violation.Code}");
            return SessionReply.Fail(violation.Code, violation.Message);
        }

        if (S.LastReceivedSeq != receivedBefore || S.LastSentSeq != sentBefore || S.Room != roomBefore
            || !ReferenceEquals(S.Stream, streamBefore) || S.Confirmed != confirmedBefore)
        {
            await saved.WriteStateAsync();
            acksUnsaved = false;
        }

        var frames = outbox.ToArray();
        outbox.Clear();
        return new SessionReply(string.Empty, string.Empty, SessionId, frames, S.LastReceivedSeq);
    }

    private async Task DroppedCore(string connectionKey, string reason)
    {
        if (S.Phase != SessionPhase.Attached || S.Route?.ConnectionKey != connectionKey)
        {
            return; // taken over by a resume, or already over
        }

        var resumable = reason == ClusterNames.GatewayLost
            || (GameCloseReasons.TryParse(reason, out var parsed) && GameCloseReasons.IsResumable(parsed));
        if (!resumable || !sessionOptions.ResumeEnabled || !S.Sequenced)
        {
            await EndAsync(ProtocolErrorCodes.ResumeEnded, reason);
            return;
        }

        S.Phase = SessionPhase.Detached;
        S.LastConnectionKey = connectionKey;
        S.Route = null;
        S.DetachedAtUnixMs = Now;
        await saved.WriteStateAsync();
        StopTimer(ref routeCheck);
        StopTimer(ref retransmit);
        StartExpiry(sessionOptions.ResumeWindow);
        Log.ClusterSessionKept(logger, SessionId, reason, connectionKey);
        if (S.Room is { } room)
        {
            await RoomOf(room).SetRoute(SessionId, null); // the others are told "away"; the seat is kept
        }
    }

    private async Task EndCore(string connectionKey, string reason)
    {
        // Also from the connection a route check took for lost: its client's Goodbye still ends the session.
        if ((S.Phase == SessionPhase.Attached && S.Route?.ConnectionKey == connectionKey)
            || (S.Phase == SessionPhase.Detached && S.LastConnectionKey == connectionKey))
        {
            await EndAsync(ProtocolErrorCodes.ResumeEnded, reason);
        }
    }

    private async Task NotifyCore(string aboutSessionId, long version, byte[] message)
    {
        if (S.PresenceSeen.GetValueOrDefault(aboutSessionId) >= version)
        {
            return; // a repeat, or older than one already sent
        }

        S.PresenceSeen[aboutSessionId] = version;
        // Presence is version 2's: a version 1 client sees a member leave only from the StateUpdates, as in one process.
        if (S.Sequenced && S.Phase is SessionPhase.Attached or SessionPhase.Detached)
        {
            SendReliable(ProtocolSerializer.Deserialize(message));
            await FlushOutboxAsync();
        }
    }

    private async Task RefreshRouteCore(string roomId)
    {
        if (S.Room != roomId || S.Phase is SessionPhase.None or SessionPhase.Ended)
        {
            await RoomOf(roomId).Leave(SessionId); // the room's saved state still had a member that left
            return;
        }

        await RoomOf(roomId).SetRoute(SessionId, S.Phase == SessionPhase.Attached ? S.Route : null);
        TellRoomPosition();
    }

    /// <summary>One-way, and so may be lost or overtaken: the room applies only a newer order, and the sweep repeats it.</summary>
    private void TellRoomPosition()
    {
        if (S.Room is { } room && S.MoveOrder > 0)
        {
            _ = RoomOf(room).Move(SessionId, S.X, S.Y, S.MoveSeq, S.MoveOrder);
        }
    }

    private async Task HandleAsync(IMessage message, long order)
    {
        switch (message)
        {
            case Echo echo:
                SendReliable(echo);
                break;
            case JoinRoom join:
                if (string.IsNullOrWhiteSpace(join.RoomId) || join.RoomId.Length > game.MaxRoomIdLength)
                {
                    throw new ProtocolViolationException(ProtocolErrorCodes.InvalidArgument, $"roomId must be 1 to {game.MaxRoomIdLength} characters");
                }

                if (S.Room is { } old && old != join.RoomId)
                {
                    await RoomOf(old).Leave(SessionId);
                }

                S.Room = join.RoomId;
                await RoomOf(join.RoomId).Join(SessionId, S.Route);
                TellRoomPosition(); // a player keeps its position from room to room, as in one process
                break;
            case Move move:
                if (!float.IsFinite(move.X) || !float.IsFinite(move.Y))
                {
                    throw new ProtocolViolationException(ProtocolErrorCodes.InvalidArgument, "Move with a non-finite coordinate");
                }

                (S.X, S.Y, S.MoveSeq, S.MoveOrder) = (move.X, move.Y, move.Seq, order);
                moved = true; // the room hears only the newest Move of a call: it keeps nothing older

                break;
            case StreamRequest request:
                StartStream(request);
                break;
            default:
                throw new ProtocolViolationException(ProtocolErrorCodes.UnexpectedMessage, $"{message.GetType().Name} is not a reliable message a client sends");
        }
    }

    private void StartStream(StreamRequest request)
    {
        var maxPayload = server.MaxFrameBytes - (S.Sequenced ? 64 : 32); // the item's envelope (and in version 2 the Reliable around it)
        if (request.Count < 0 || request.Count > game.MaxStreamCount
            || request.PayloadBytes < 0 || request.PayloadBytes > maxPayload
            || request.IntervalMs < 0 || request.IntervalMs > 60_000)
        {
            throw new ProtocolViolationException(
                ProtocolErrorCodes.InvalidArgument,
                $"StreamRequest needs count 0..{game.MaxStreamCount}, payloadBytes 0..{maxPayload}, intervalMs 0..60000");
        }

        if (S.Stream is not null)
        {
            throw new ProtocolViolationException(ProtocolErrorCodes.InvalidArgument, "a stream is already running");
        }

        if (request.Count == 0)
        {
            return;
        }

        S.Stream = new StreamProgress { Count = request.Count, PayloadBytes = request.PayloadBytes, IntervalMs = request.IntervalMs };
        StartStreamTimer();
    }

    /// <summary>
    /// Produces the stream's next items while the replay buffer has room (the client's acknowledgements make room:
    /// that is the stream's flow control here), saves, then pushes them. One item per interval, or as many as fit
    /// when the interval is 0.
    /// </summary>
    private async Task StreamTurnAsync(CancellationToken cancellationToken)
    {
        if (S.Stream is not { } stream || S.Phase is SessionPhase.None or SessionPhase.Ended)
        {
            StopTimer(ref streamTimer);
            return;
        }

        var budget = stream.IntervalMs > 0 ? 1 : StreamItemsPerTurn;
        while (budget-- > 0 && stream.Next < stream.Count && HasRoomFor(stream.PayloadBytes + 32))
        {
            SendReliable(new StreamItem(stream.Next, StreamPayload(stream.PayloadBytes)));
            stream.Next++;
        }

        if (stream.Next >= stream.Count)
        {
            S.Stream = null;
            StopTimer(ref streamTimer);
        }

        await FlushOutboxAsync();
    }

    /// <summary>Saves, then pushes what was produced outside a call from the gateway.</summary>
    private async Task FlushOutboxAsync()
    {
        if (outbox.Count == 0)
        {
            return;
        }

        await saved.WriteStateAsync();
        var frames = outbox.ToArray();
        outbox.Clear();
        if (S.Phase == SessionPhase.Attached && S.Route is { } route)
        {
            _ = route.Gateway.Deliver(route.ConnectionKey, frames);
        }
    }

    /// <summary>The same payload as one process sends (<see cref="Game.StreamSender"/>): byte i is i mod 256, so a reader can check it.</summary>
    private static byte[] StreamPayload(int bytes)
    {
        var payload = new byte[bytes];
        for (var i = 0; i < payload.Length; i++)
        {
            payload[i] = (byte)i;
        }

        return payload;
    }

    private bool HasRoomFor(int bytes) =>
        S.Replay.Count == 0
        || (S.Replay.Count + 1 <= sessionOptions.MaxBufferedMessages / 4 * 3 && S.ReplayBytes + bytes <= sessionOptions.MaxBufferedBytes / 4 * 3);

    /// <summary>Numbers one reliable message, keeps it for replay and queues it for the client (sent after the next save).</summary>
    private void SendReliable(IMessage message)
    {
        var seq = ++S.LastSentSeq;
        var frame = new Frame(seq, ProtocolSerializer.Serialize(S.Sequenced ? new Reliable(seq, S.LastReceivedSeq, message) : message));
        S.Replay.Add(frame);
        var bytes = S.ReplayBytes;
        while (S.Replay.Count > 1 && (S.Replay.Count > sessionOptions.MaxBufferedMessages || bytes > sessionOptions.MaxBufferedBytes))
        {
            bytes -= S.Replay[0].Payload.Length;
            S.LostThrough = S.Replay[0].Seq;
            S.Replay.RemoveAt(0);
        }

        outbox.Add(frame);
    }

    private void Trim(long ack)
    {
        if (ack > S.AckedThrough)
        {
            S.AckedThrough = ack;
            lastProgressAt = Now;
        }

        var drop = 0;
        while (drop < S.Replay.Count && S.Replay[drop].Seq <= ack)
        {
            drop++;
        }

        S.Replay.RemoveRange(0, drop);
        acksUnsaved |= drop > 0; // saved with the next change, or by the retransmit timer: a repeat costs nothing but bytes
    }

    private SessionReply Welcome(int heartbeatIntervalMs, bool resumed) =>
        new(string.Empty, string.Empty, SessionId, [WelcomeFrame(heartbeatIntervalMs, resumed)], S.LastReceivedSeq);

    private Frame WelcomeFrame(int heartbeatIntervalMs, bool resumed) => new(0, ProtocolSerializer.Serialize(S.Sequenced
        ? new Welcome(SessionId, heartbeatIntervalMs, Now, S.Token, S.Token.Length > 0 ? sessionOptions.ResumeWindowMs : 0, resumed, S.LastReceivedSeq)
        : new Welcome(SessionId, heartbeatIntervalMs, Now))); // version 1's three fields

    /// <summary>The Welcome, every unacknowledged message after <paramref name="clientHas"/>, then the room as it is now.</summary>
    private async Task<SessionReply> ResumedReply(long clientHas, int heartbeatIntervalMs)
    {
        var frames = new List<Frame> { WelcomeFrame(heartbeatIntervalMs, resumed: true) };
        frames.AddRange(S.Replay.Where(f => f.Seq > clientHas));
        if (S.Room is { } room)
        {
            frames.Add(new Frame(0, await RoomOf(room).Snapshot()));
        }

        lastProgressAt = Now;
        return new SessionReply(string.Empty, string.Empty, SessionId, [.. frames], S.LastReceivedSeq);
    }

    private async Task EndAsync(string code, string why)
    {
        if (S.Phase is SessionPhase.Ended or SessionPhase.None)
        {
            return;
        }

        var room = S.Room;
        S.Phase = SessionPhase.Ended;
        S.EndCode = code;
        S.EndedAtUnixMs = Now;
        S.Route = null;
        S.Room = null;
        S.Stream = null;
        S.Replay.Clear();
        await saved.WriteStateAsync();
        StopTimer(ref expiry);
        StopTimer(ref routeCheck);
        StopTimer(ref retransmit);
        StopTimer(ref streamTimer);
        if (room is not null)
        {
            await RoomOf(room).Leave(SessionId);
        }

        Log.ClusterSessionEnded(logger, SessionId, why);
        StartForget();
    }

    private void StartAttachedTimers()
    {
        StopTimer(ref routeCheck);
        StopTimer(ref retransmit);
        var check = TimeSpan.FromMilliseconds(cluster.RouteCheckMs);
        routeCheck = this.RegisterGrainTimer(ct => Guard(() => CheckRouteAsync(ct)), new GrainTimerCreationOptions(check, check) { KeepAlive = true });
        var every = TimeSpan.FromMilliseconds(cluster.RetransmitMs);
        retransmit = this.RegisterGrainTimer(ct => Guard(() => RetransmitAsync(ct)), new GrainTimerCreationOptions(every, every) { KeepAlive = true });
        lastProgressAt = Now;
    }

    private void StartStreamTimer()
    {
        StopTimer(ref streamTimer);
        var every = TimeSpan.FromMilliseconds(Math.Max(S.Stream?.IntervalMs ?? 0, 10));
        streamTimer = this.RegisterGrainTimer(ct => Guard(() => StreamTurnAsync(ct)), new GrainTimerCreationOptions(TimeSpan.Zero, every) { KeepAlive = true });
    }

    private void StartExpiry(TimeSpan after)
    {
        StopTimer(ref expiry);
        // Guarded: a failed end (Redis down) forgets memory; the room's sweep brings the grain back, and its activation
        // finds the window passed and ends it then.
        expiry = this.RegisterGrainTimer(
            _ => Guard(async () =>
            {
                if (S.Phase == SessionPhase.Detached)
                {
                    await EndAsync(ProtocolErrorCodes.ResumeExpired, GameCloseReasons.ResumeExpired.Name);
                }
            }),
            new GrainTimerCreationOptions(after, Timeout.InfiniteTimeSpan) { KeepAlive = true });
    }

    /// <summary>An ended session is remembered for a window (a late resume is told how it ended), then forgotten.</summary>
    private void StartForget()
    {
        var keep = TimeSpan.FromMilliseconds(Math.Max(sessionOptions.ResumeWindowMs, 1000));
        var left = TimeSpan.FromMilliseconds(Math.Max(0, S.EndedAtUnixMs + (long)keep.TotalMilliseconds - Now));
        StopTimer(ref expiry);
        expiry = this.RegisterGrainTimer(
            cancellationToken => Guard(async () =>
            {
                await saved.ClearStateAsync(cancellationToken);
                DeactivateOnIdle();
            }),
            new GrainTimerCreationOptions(left, Timeout.InfiniteTimeSpan) { KeepAlive = true });
    }

    /// <summary>
    /// A gateway that died (SIGKILL) never says its connections dropped: while attached, the grain asks now and then
    /// whether its connection is still there, and treats "no" or no answer as a drop the client may resume from.
    /// </summary>
    private async Task CheckRouteAsync(CancellationToken cancellationToken)
    {
        if (S.Phase != SessionPhase.Attached || S.Route is not { } route)
        {
            return;
        }

        string? lost = null;
        try
        {
            if (!await route.Gateway.Owns(route.ConnectionKey).WaitAsync(OwnsTimeout, cancellationToken))
            {
                lost = "the gateway no longer has the connection";
            }
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            lost = ex.GetType().Name;
        }

        // Twice in a row: one slow answer (a pause in the gateway, a silo restarting) is not a lost connection.
        routeCheckFailures = lost is null ? 0 : routeCheckFailures + 1;
        if (routeCheckFailures >= 2 && S.Route?.ConnectionKey == route.ConnectionKey)
        {
            routeCheckFailures = 0;
            Log.ClusterRouteLost(logger, SessionId, route.ConnectionKey, lost!);
            await DroppedCore(route.ConnectionKey, ClusterNames.GatewayLost);

            // If the connection lives after all (a gateway that stalled), its client is told to come back by a resume;
            // an idle client would otherwise never hear of it.
            _ = route.Gateway.Close(route.ConnectionKey, GameCloseReasons.Reconnect.Name, "the session took this connection for lost");
        }
    }

    /// <summary>
    /// Pushes are one-way and may be lost (a gateway's connection to this silo broke): when the client has
    /// acknowledged nothing for a while, the unacknowledged messages go again. The gateway writes only the next
    /// sequence number it has not written, so a repeat never reaches the client twice.
    /// </summary>
    private async Task RetransmitAsync(CancellationToken cancellationToken)
    {
        if (acksUnsaved)
        {
            // Acknowledgements alone are saved here, not on every Ack: after a failover the buffer then holds at most
            // this interval's acknowledged messages, which the gateway skips as already written.
            acksUnsaved = false;
            await saved.WriteStateAsync(cancellationToken);
        }

        if (S.Phase == SessionPhase.Attached && S.Route is { } route && S.Replay.Count > 0 && Now - lastProgressAt >= cluster.RetransmitMs)
        {
            lastProgressAt = Now;
            _ = route.Gateway.Deliver(route.ConnectionKey, [.. S.Replay]);
        }
    }

    /// <summary>
    /// How long the grain waits for a gateway's word on a connection: a fifth of <c>Cluster:RouteCheckMs</c>. A killed
    /// gateway's calls hang rather than fail, and the grain takes no other call while it waits.
    /// </summary>
    private TimeSpan OwnsTimeout => TimeSpan.FromMilliseconds(cluster.RouteCheckMs / 5.0);

    /// <summary>Whether the route's gateway still has its connection; no answer within <see cref="OwnsTimeout"/> means no.</summary>
    private async Task<bool> RouteAliveAsync(Route route)
    {
        try
        {
            return await route.Gateway.Owns(route.ConnectionKey).WaitAsync(OwnsTimeout);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            return false;
        }
    }

    private void Forget(string? token)
    {
        if (string.IsNullOrEmpty(token))
        {
            return;
        }

        S.UsedTokens.Add(token);
        if (S.UsedTokens.Count > UsedTokensKept)
        {
            S.UsedTokens.RemoveAt(0);
        }
    }

    private SessionReply Refuse(string code, string? detail = null) => SessionReply.Fail(code, code switch
    {
        ProtocolErrorCodes.ResumeUnknown => "no session has this resume token",
        ProtocolErrorCodes.ResumeExpired => $"the session's resume window ({sessionOptions.ResumeWindowMs} ms) passed",
        ProtocolErrorCodes.ResumeTokenUsed => "this resume token was already used; a resume gets a new one in its Welcome",
        ProtocolErrorCodes.ResumeEnded => "the session ended for good (Goodbye, protocol error or server decision)",
        _ => detail ?? code,
    });

    private IRoomGrain RoomOf(string roomId) => GrainFactory.GetGrain<IRoomGrain>(roomId);

    /// <summary>
    /// A call that failed other than by the client's fault (a save to Redis, a room's answer) may leave memory ahead of
    /// what was saved: a retried call would then take its own messages for duplicates. So the grain forgets its memory
    /// and comes back from the last save on the next call.
    /// </summary>
    private async Task<T> Guard<T>(Func<Task<T>> body)
    {
        try
        {
            return await body();
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            outbox.Clear();
            DeactivateOnIdle();
            throw;
        }
    }

    private Task<bool> Guard(Func<Task> body) => Guard(async () =>
    {
        await body();
        return true;
    });

    private static void StopTimer(ref IGrainTimer? timer)
    {
        timer?.Dispose();
        timer = null;
    }

    /// <summary>The session id (so any gateway finds the grain), a dot, and 192 random bits.</summary>
    private string NewToken() => $"{SessionId}.{Base64Url.EncodeToString(RandomNumberGenerator.GetBytes(TokenBytes))}";
}
