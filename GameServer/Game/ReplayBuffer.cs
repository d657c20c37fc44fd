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
    /// Whether one more message like the last one fits without evicting anything: a producer that can wait (a
    /// stream) checks this, so its own items are never evicted.
    /// An empty buffer always has room, so an item larger than the byte cap still goes (alone) rather than never.
    /// </summary>
    public bool HasRoom => frames.Count == 0 || (frames.Count < maxMessages && Bytes + lastLength <= maxBytes);

    private int lastLength;

    public void Append(long seq, byte[] payload)
    {
        lastLength = payload.Length;
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

    /// <summary>The messages after <paramref name="seq"/>, oldest first.</summary>
    public IEnumerable<byte[]> After(long seq) => frames.Where(f => f.Seq > seq).Select(f => f.Payload);

    public void Clear()
    {
        frames.Clear();
        Bytes = 0;
    }
}
