using MessagePack;

namespace GameProtocol;

/// <summary>
/// Every frame carries one <see cref="IMessage"/>, written as the MessagePack union <c>[tag, body]</c>.
/// Tags never change meaning; new messages take new tags at the end (see docs/PROTOCOL.md).
/// </summary>
[Union(MessageTags.Hello, typeof(Hello))]
[Union(MessageTags.Welcome, typeof(Welcome))]
[Union(MessageTags.Ping, typeof(Ping))]
[Union(MessageTags.Pong, typeof(Pong))]
[Union(MessageTags.Echo, typeof(Echo))]
[Union(MessageTags.JoinRoom, typeof(JoinRoom))]
[Union(MessageTags.Move, typeof(Move))]
[Union(MessageTags.StateUpdate, typeof(StateUpdate))]
[Union(MessageTags.StreamRequest, typeof(StreamRequest))]
[Union(MessageTags.StreamItem, typeof(StreamItem))]
[Union(MessageTags.Goodbye, typeof(Goodbye))]
[Union(MessageTags.Error, typeof(Error))]
[Union(MessageTags.Ack, typeof(Ack))]
[Union(MessageTags.Reliable, typeof(Reliable))]
[Union(MessageTags.Presence, typeof(Presence))]
#pragma warning disable CA1040 // a marker interface is how MessagePack-CSharp expresses a union
public interface IMessage
#pragma warning restore CA1040
{
}

/// <summary>
/// c→s: opens a session, or (version 2, with a token) resumes one. Must be the first frame. Version 1 writes three
/// fields; version 2 adds <c>LastReceivedSeq</c>, the highest reliable sequence number the client received in the
/// session it resumes (0 for a new session).
/// </summary>
[MessagePackObject]
[MessagePackFormatter(typeof(HelloFormatter))]
public sealed record Hello(
    [property: Key(0)] int ProtocolVersion,
    [property: Key(1)] string PlayerName,
    [property: Key(2)] string? ResumeToken,
    [property: Key(3)] long LastReceivedSeq = 0) : IMessage;

/// <summary>
/// s→c: answers Hello. Version 1 has three fields. Version 2 (written when <c>ResumeToken</c> is not null) adds the
/// token to resume this session with (empty when resume is off), the window in which it may, whether this Welcome
/// resumed a session, and the highest reliable sequence number the server received from the client.
/// </summary>
[MessagePackObject]
[MessagePackFormatter(typeof(WelcomeFormatter))]
public sealed record Welcome(
    [property: Key(0)] string SessionId,
    [property: Key(1)] int HeartbeatIntervalMs,
    [property: Key(2)] long ServerTimeUnixMs,
    [property: Key(3)] string? ResumeToken = null,
    [property: Key(4)] int ResumeWindowMs = 0,
    [property: Key(5)] bool Resumed = false,
    [property: Key(6)] long LastReceivedSeq = 0) : IMessage;

/// <summary>Either direction: asks for a Pong carrying the same fields.</summary>
[MessagePackObject]
public sealed record Ping(
    [property: Key(0)] long Seq,
    [property: Key(1)] long SentAtUnixMs) : IMessage;

/// <summary>Either direction: answers a Ping, fields copied from it.</summary>
[MessagePackObject]
public sealed record Pong(
    [property: Key(0)] long Seq,
    [property: Key(1)] long SentAtUnixMs) : IMessage;

/// <summary>Either direction: the server answers with the same seq and payload.</summary>
[MessagePackObject]
public sealed record Echo(
    [property: Key(0)] long Seq,
    [property: Key(1)] byte[] Payload) : IMessage;

/// <summary>c→s: puts the session into a room (leaving any previous one).</summary>
[MessagePackObject]
public sealed record JoinRoom(
    [property: Key(0)] string RoomId) : IMessage;

/// <summary>c→s: the player's new position; seq is echoed back in StateUpdate as lastSeq.</summary>
[MessagePackObject]
public sealed record Move(
    [property: Key(0)] long Seq,
    [property: Key(1)] float X,
    [property: Key(2)] float Y) : IMessage;

/// <summary>
/// s→c: one room tick: the whole room's state. <c>AfterGap</c> (version 2, written only when true) marks the first
/// update after a resume: the updates sent while the client was away are not replayed; this one replaces them.
/// </summary>
[MessagePackObject]
[MessagePackFormatter(typeof(StateUpdateFormatter))]
public sealed record StateUpdate(
    [property: Key(0)] long Tick,
    [property: Key(1)] long ServerTimeUnixMs,
    [property: Key(2)] IReadOnlyList<PlayerState> Players,
    [property: Key(3)] bool AfterGap = false) : IMessage;

/// <summary>One player's entry in a StateUpdate: <c>[playerId, x, y, lastSeq]</c>.</summary>
[MessagePackObject]
public sealed record PlayerState(
    [property: Key(0)] string PlayerId,
    [property: Key(1)] float X,
    [property: Key(2)] float Y,
    [property: Key(3)] long LastSeq);

/// <summary>c→s: asks for <c>Count</c> StreamItems, one every <c>IntervalMs</c> (0: as fast as possible).</summary>
[MessagePackObject]
public sealed record StreamRequest(
    [property: Key(0)] int Count,
    [property: Key(1)] int PayloadBytes,
    [property: Key(2)] int IntervalMs) : IMessage;

/// <summary>s→c: one item of a requested stream.</summary>
[MessagePackObject]
public sealed record StreamItem(
    [property: Key(0)] int Index,
    [property: Key(1)] byte[] Payload) : IMessage;

/// <summary>
/// Either direction: the graceful-close handshake. <c>FramesReceived</c> counts the frames the sender received
/// from the other side on this connection, Hello included, so each side can prove nothing it sent was lost.
/// </summary>
[MessagePackObject]
public sealed record Goodbye(
    [property: Key(0)] string Reason,
    [property: Key(1)] long FramesReceived) : IMessage;

/// <summary>s→c: sent before the server closes a connection for a protocol error or a limit.</summary>
[MessagePackObject]
public sealed record Error(
    [property: Key(0)] string Code,
    [property: Key(1)] string Message) : IMessage;

/// <summary>
/// Either direction, version 2: the highest reliable sequence number received from the other side (cumulative), sent
/// when there is no Reliable going that way to carry it.
/// </summary>
[MessagePackObject]
public sealed record Ack(
    [property: Key(0)] long Received) : IMessage;

/// <summary>
/// Either direction, version 2: one reliable message with its sequence number (from 1, per direction, per session,
/// kept across resumes) and the sender's cumulative acknowledgement of the other direction.
/// </summary>
[MessagePackObject]
public sealed record Reliable(
    [property: Key(0)] long Seq,
    [property: Key(1)] long Ack,
    [property: Key(2)] IMessage Message) : IMessage;

/// <summary>
/// s→c, version 2, reliable: another member of the client's room lost its connection (<c>Connected</c> false: its
/// seat is kept while it may resume) or came back (true). A member that leaves for good just disappears from the
/// StateUpdates, as in version 1.
/// </summary>
[MessagePackObject]
public sealed record Presence(
    [property: Key(0)] string PlayerId,
    [property: Key(1)] bool Connected) : IMessage;
