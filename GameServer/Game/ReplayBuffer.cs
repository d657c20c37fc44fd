namespace GameServer.Game;

/// <summary>
/// The reliable messages a session sent and the client has not acknowledged yet, encoded as they went out, in
/// sequence order, capped in count and bytes. When a message would break a cap the oldest ones go, and the buffer
/// remembers the last sequence number it lost: a resume that needs one of those is refused, never served with a
/// hole. Not thread-safe: its session's lock guards it.
/// </summary>
public sealed class ReplayBuffer
{
    private readonly Queue<(long Seq, byte[] Payload)> frames = new();
    private readonly int maxMessages;
    private readonly int maxBytes;

    public ReplayBuffer(int maxMessages, int maxBytes)
    {
        this.maxMessages = maxMessages;
        this.maxBytes = maxBytes;
    }

    public int Count => frames.Count;

    public long Bytes { get; private set; }

    /// <summary>The highest sequence number evicted by the caps before the client acknowledged it (0: none).</summary>
    public long LostThrough { get; private set; }

    /// <summary>
    /// Whether a producer that can wait (a stream) may add a message of about <paramref name="bytes"/>: it may fill
    /// three quarters of each cap, so its own items are never evicted, and the last quarter stays for messages that
    /// cannot wait (an Echo's answer, a Presence), which would otherwise push the stream's unacknowledged items out
    /// and make the session unresumable. An empty buffer always has room, so an item larger than the cap still goes,
    /// alone.
    /// </summary>
    public bool HasRoomFor(int bytes) =>
        frames.Count == 0 || (frames.Count + 1 <= maxMessages / 4 * 3 && Bytes + bytes <= maxBytes / 4 * 3);

    public void Append(long seq, byte[] payload)
    {
        frames.Enqueue((seq, payload));
        Bytes += payload.Length;
        while (frames.Count > 1 && (frames.Count > maxMessages || Bytes > maxBytes))
        {
            var (lost, bytes) = frames.Dequeue();
            Bytes -= bytes.Length;
            LostThrough = lost;
        }
    }

    /// <summary>The highest sequence number the client acknowledged.</summary>
    public long AckedThrough { get; private set; }

    /// <summary>Drops every message up to and including <paramref name="seq"/>: the client has them.</summary>
    /// <returns>How many were dropped.</returns>
    public int TrimThrough(long seq)
    {
        AckedThrough = Math.Max(AckedThrough, seq);
        var dropped = 0;
        while (frames.Count > 0 && frames.Peek().Seq <= seq)
        {
            Bytes -= frames.Dequeue().Payload.Length;
            dropped++;
        }

        return dropped;
    }

    /// <summary>
    /// Whether every message after <paramref name="seq"/> is still here to replay: none was evicted after it, and the
    /// client does not claim less than it already acknowledged (those were dropped on its word).
    /// </summary>
    public bool CanReplayAfter(long seq) => seq >= LostThrough && seq >= AckedThrough;

    /// <summary>The buffered messages, oldest first.</summary>
    public IEnumerable<byte[]> Payloads => frames.Select(f => f.Payload);

    public void Clear()
    {
        frames.Clear();
        Bytes = 0;
    }
}
