using Orleans.Concurrency;

namespace GameServer.Cluster;

// What gateways and grains say to each other. Game messages travel as their MessagePack payloads (the protocol's own
// encoding), so the grains produce exactly the bytes a single process would write and the gateway never re-encodes.

/// <summary>One frame for a client: a reliable message (<c>Seq</c> &gt; 0, its Reliable envelope included) or an unsequenced one (0).</summary>
[GenerateSerializer]
[Alias("gs.Frame")]
[Immutable]
public sealed record Frame(long Seq, byte[] Payload);

/// <summary>Where a session is carried now: a gateway (its observer) and the connection's key there.</summary>
[GenerateSerializer]
[Alias("gs.Route")]
[Immutable]
public sealed record Route(IGatewayObserver Gateway, string ConnectionKey);

/// <summary>One version 2 message from the client, in arrival order: a Reliable (<c>Message</c> set) or a bare Ack.</summary>
[GenerateSerializer]
[Alias("gs.Inbound")]
[Immutable]
public sealed record Inbound(long Seq, long Ack, byte[]? Message);

/// <summary>
/// A session grain's answer. <c>Code</c> empty: go on, write <c>Frames</c> in order (the Welcome first after Open or
/// Resume) and acknowledge <c>AckThrough</c>; unless <c>TakenOver</c> (another connection carries the session now:
/// close with Goodbye session_taken_over) or <c>Reconnect</c> (the session took this connection for lost: close with
/// Goodbye reconnect, the client resumes). Otherwise the session refused or ended: send Error(<c>Code</c>,
/// <c>Text</c>) and close. A resume's answer says how long the session was away, how many messages it replays, and
/// whether it took a live connection over (for the gateway's metrics).
/// </summary>
[GenerateSerializer]
[Alias("gs.SessionReply")]
[Immutable]
public sealed record SessionReply(
    string Code,
    string Text,
    string SessionId,
    Frame[] Frames,
    long AckThrough,
    string? TakenOver = null,
    bool Reconnect = false,
    long AwayMs = 0,
    int Replayed = 0,
    bool TookOver = false)
{
    public bool Ok => Code.Length == 0;

    public static SessionReply Fail(string code, string text) => new(code, text, string.Empty, [], 0);
}

/// <summary>
/// One gateway process, as grains see it: an object in the gateway made reachable through its Orleans client.
/// Pushes are one-way (best effort): a session grain pushes its reliable messages again until they are acknowledged,
/// and a room's next tick replaces a lost update.
/// </summary>
[Alias("gs.IGatewayObserver")]
public interface IGatewayObserver : IGrainObserver
{
    /// <summary>Reliable messages (and a Presence) a session produced outside a call from this gateway: write them in sequence order.</summary>
    [OneWay]
    [Alias("Deliver")]
    Task Deliver(string connectionKey, Frame[] frames);

    /// <summary>
    /// One room tick for the listed connections: a whole frame (length header included), encoded once. One-way calls
    /// may overtake each other: a tick older than one already sent by the same activation of the room is dropped.
    /// </summary>
    [OneWay]
    [Alias("RoomUpdate")]
    Task RoomUpdate(string roomId, Guid incarnation, long tick, byte[] frame, string[] connectionKeys);

    /// <summary>
    /// The session no longer runs on this connection: close it with Goodbye(<paramref name="reason"/>):
    /// <c>session_taken_over</c> (resumed elsewhere) or <c>reconnect</c> (taken for lost; the client resumes).
    /// </summary>
    [OneWay]
    [Alias("Close")]
    Task Close(string connectionKey, string reason, string detail);

    /// <summary>Whether this gateway still has the connection open.</summary>
    [Alias("Owns")]
    Task<bool> Owns(string connectionKey);
}

/// <summary>
/// A player's session, keyed by its session id: the resume token, both sequence numbers, the unacknowledged
/// messages and the seat, saved to Redis before anything leaves, so a silo's death loses none of it.
/// </summary>
[Alias("gs.ISessionGrain")]
public interface ISessionGrain : IGrainWithStringKey
{
    /// <summary>
    /// A new session. Version 1 has no resume and no acknowledgements of its own: its gateway numbers the client's
    /// messages and acknowledges what it wrote, so a retried call is still handled once and a lost push is repeated.
    /// </summary>
    [Alias("Open")]
    Task<SessionReply> Open(string playerName, int protocolVersion, Route route, int heartbeatIntervalMs);

    [Alias("Resume")]
    Task<SessionReply> Resume(string token, long clientHas, Route route, int heartbeatIntervalMs);

    /// <summary>The client's messages since the last call, in order. Answers with what to write and acknowledge.</summary>
    [Alias("Receive")]
    Task<SessionReply> Receive(string connectionKey, Inbound[] messages);

    /// <summary>The connection closed for <paramref name="reason"/> (a close reason's name): kept for a resume or ended.</summary>
    [Alias("Dropped")]
    Task Dropped(string connectionKey, string reason);

    /// <summary>Ends the session for good (Goodbye, protocol error), if the connection still carries it.</summary>
    [Alias("End")]
    Task End(string connectionKey, string reason);

    /// <summary>
    /// A Presence from the room about another member, for this session's client. Not one-way: the room retries until
    /// the session has it saved, so a retry may repeat one and two may cross; <paramref name="version"/> (per member,
    /// growing) lets the session take each once and never an older one after a newer.
    /// </summary>
    [Alias("Notify")]
    Task Notify(string aboutSessionId, long version, byte[] message);

    /// <summary>The room came back from its saved state and asks its members where they are.</summary>
    [OneWay]
    [Alias("RefreshRoute")]
    Task RefreshRoute(string roomId);
}

/// <summary>A room, keyed by its id: members and positions (saved), its 20 Hz tick, and where to send each member's updates.</summary>
[Alias("gs.IRoomGrain")]
public interface IRoomGrain : IGrainWithStringKey
{
    [Alias("Join")]
    Task Join(string sessionId, Route? route);

    [Alias("Leave")]
    Task Leave(string sessionId);

    /// <summary>Where the member's updates go now; null while it is away (its seat is kept and the others told).</summary>
    [Alias("SetRoute")]
    Task SetRoute(string sessionId, Route? route);

    /// <summary>
    /// The member's position and the Move's own seq; <paramref name="order"/> is the session's inbound sequence number
    /// of that Move, which only grows, so a Move that overtook a newer one on the way is not applied after it.
    /// </summary>
    [OneWay]
    [Alias("Move")]
    Task Move(string sessionId, float x, float y, long seq, long order);

    /// <summary>The room now, flagged as after a gap: the first update a resumed member gets.</summary>
    [Alias("Snapshot")]
    Task<byte[]> Snapshot();
}
