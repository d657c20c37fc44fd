namespace GameServer.Connection;

/// <summary>
/// Raised through the pipeline (as a user event) by <see cref="CloseClassifier"/> once per connection, just before
/// <c>ChannelInactive</c> travels on, so handlers above it can react to how the connection ended without parsing
/// logs.
/// </summary>
public sealed record ConnectionClosedEvent(
    string ConnectionId,
    string RemoteEndPoint,
    CloseReason Reason,
    int Errno,
    string? Detail,
    TimeSpan Duration,
    long FramesReceived,
    long FramesSent,
    long BytesReceived,
    long BytesSent,
    long? PeerFramesReceived)
{
    public string ReasonName => Reason.ToName();
}
