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
#pragma warning disable CA1040 // a marker interface is how MessagePack-CSharp expresses a union
public interface IMessage
#pragma warning restore CA1040
{
}

/// <summary>c→s: opens a session. Must be the first frame.</summary>
[MessagePackObject]
public sealed record Hello(
    [property: Key(0)] int ProtocolVersion,
    [property: Key(1)] string PlayerName,
    [property: Key(2)] string? ResumeToken) : IMessage;

/// <summary>s→c: answers Hello.</summary>
[MessagePackObject]
public sealed record Welcome(
    [property: Key(0)] string SessionId,
    [property: Key(1)] int HeartbeatIntervalMs,
    [property: Key(2)] long ServerTimeUnixMs) : IMessage;

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

/// <summary>s→c: one room tick.</summary>
[MessagePackObject]
public sealed record StateUpdate(
    [property: Key(0)] long Tick,
    [property: Key(1)] long ServerTimeUnixMs,
    [property: Key(2)] IReadOnlyList<PlayerState> Players) : IMessage;

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
