namespace TcpConnections;

/// <summary>
/// The close record: raised through the pipeline (as a user event) by <see cref="ConnectionHandler"/> once per
/// connection, just before <c>ChannelInactive</c> travels on, and the result of <see cref="TcpConnection.Closed"/>, so
/// code can react to how a connection ended without parsing logs.
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
    public string ReasonName => Reason.Name;
}
