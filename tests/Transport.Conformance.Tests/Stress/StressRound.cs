using System.Collections.Concurrent;
using System.Net.Sockets;

namespace Transport.Conformance.Tests.Stress;

/// <summary>How a connection ended, as one end saw it.</summary>
public enum EndOutcome
{
    /// <summary>Still open (the round gave up on it).</summary>
    Open,

    /// <summary>This end closed it (a clean finish, its own cut, or the round aborting it).</summary>
    LocalClose,

    /// <summary>The peer's FIN: end of stream.</summary>
    PeerEof,

    /// <summary>A socket error: the peer's RST (ECONNRESET), or a write into a reset connection (EPIPE).</summary>
    PeerReset,

    /// <summary>The bytes were wrong: this end reported it and aborted.</summary>
    Corrupted,
}

/// <summary>
/// What one end saw by the time its connection ended. <see cref="FinAfterEveryWrite"/>: it shut its output down
/// (shutdown(SHUT_WR)) once every write had completed, so its peer must read all it wrote and then EOF.
/// </summary>
public sealed record EndReport(EndRole Role, EndOutcome Outcome, long Received, long Written, bool WritesCompleted, bool FinAfterEveryWrite, string? Error)
{
    public override string ToString() =>
        $"{Role}: {Outcome}{(Error is null ? string.Empty : $" ({Error})")}, received {Received} B, wrote {Written} B" +
        (WritesCompleted ? string.Empty : " (not all completed)") + (FinAfterEveryWrite ? ", then FIN" : string.Empty);
}

/// <summary>One end of a connection under stress: a DotNetty channel or a plain socket.</summary>
public interface IStressEnd
{
    EndRole Role { get; }

    /// <summary>Null until a server end has learned which connection it is.</summary>
    ConnectionPlan? Plan { get; }

    /// <summary>Completes when the end is closed, with what it saw.</summary>
    Task<EndReport> Ended { get; }

    /// <summary>Starts writing. Reading runs from the moment the end exists.</summary>
    void Start();

    /// <summary>Resets the connection (the round failed or timed out).</summary>
    void Abort();
}

/// <summary>
/// What the ends of one round share: the byte pattern, the rules for message sizes and reader pauses, the way a
/// server end learns its connection, and the first failures, each with the seed and enough to find the bad byte.
/// </summary>
public sealed class StressRound
{
    /// <summary>The largest write: a frame limit, as the game server's.</summary>
    public const int MaxMessageBytes = 64 * 1024;

    /// <summary>Most writes are small (as a game's are); the rest spread up to the frame limit.</summary>
    public const int SmallMessageBytes = 1024;

    /// <summary>A reader pauses after about one read in this many.</summary>
    public const int PauseOneIn = 6;

    /// <summary>A pause lasts up to this long: long enough for the writer's socket to fill, short against the round.</summary>
    public const int MaxPauseMs = 25;

    /// <summary>A producer writes up to this many messages before handing the stream to the other thread.</summary>
    public const int MaxBurstMessages = 8;

    /// <summary>A write is flushed at once in one case of this many; the others wait for a later flush (gathered writes).</summary>
    public const int FlushOneIn = 3;

    private const int MaxFailuresKept = 20;

    private readonly ConcurrentQueue<string> failures = new();
    private readonly ConcurrentDictionary<int, TaskCompletionSource<ConnectionPlan>> pairing = new();
    private readonly ConcurrentQueue<IStressEnd> serverEnds = new();
    private readonly TaskCompletionSource allServerEnds = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource firstFailure = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int unwritableChannels;
    private long unwritableTransitions;
    private long pauses;
    private int failureCount;

    public StressRound(long seed, IReadOnlyList<ConnectionPlan> plans)
    {
        Seed = seed;
        Plans = plans;
        Pattern = new StreamPattern(seed, plans.Count * 2);
    }

    public long Seed { get; }

    public IReadOnlyList<ConnectionPlan> Plans { get; }

    public StreamPattern Pattern { get; }

    public IReadOnlyCollection<string> Failures => failures;

    public Task FirstFailure => firstFailure.Task;

    /// <summary>Completes once every connection's server end knows its plan.</summary>
    public Task AllServerEnds => allServerEnds.Task;

    public IReadOnlyCollection<IStressEnd> ServerEnds => serverEnds;

    /// <summary>Channels that went over their write high-water mark at least once: proof that writers met full sockets.</summary>
    public int UnwritableChannels => Volatile.Read(ref unwritableChannels);

    public long UnwritableTransitions => Interlocked.Read(ref unwritableTransitions);

    public long Pauses => Interlocked.Read(ref pauses);

    /// <summary>How many failures were reported; only the first few are kept.</summary>
    public int FailureCount => Volatile.Read(ref failureCount);

    public void Fail(string message)
    {
        if (Interlocked.Increment(ref failureCount) <= MaxFailuresKept)
        {
            failures.Enqueue(message);
        }

        firstFailure.TrySetResult();
    }

    /// <summary>The client says which connection its local port is; the server end with that remote port learns it.</summary>
    public void Offer(int clientPort, ConnectionPlan plan) => PairOf(clientPort).TrySetResult(plan);

    public Task<ConnectionPlan> ClaimAsync(int clientPort) => PairOf(clientPort).Task;

    public void ServerEndAttached(IStressEnd end)
    {
        serverEnds.Enqueue(end);
        if (serverEnds.Count == Plans.Count)
        {
            allServerEnds.TrySetResult();
        }
    }

    public void BecameUnwritable(bool first)
    {
        Interlocked.Increment(ref unwritableTransitions);
        if (first)
        {
            Interlocked.Increment(ref unwritableChannels);
        }
    }

    public void Paused() => Interlocked.Increment(ref pauses);

    /// <summary>Draws the next write's size, never past <paramref name="limit"/> bytes (the stream's end or a cut).</summary>
    public static int NextMessageSize(Random random, long limit)
    {
        var size = random.Next(2) == 0 ? random.Next(1, SmallMessageBytes + 1) : random.Next(1, MaxMessageBytes + 1);
        return (int)Math.Min(size, limit);
    }

    public static string DescribeError(Exception error) => error switch
    {
        SocketException socket => $"{socket.SocketErrorCode}, errno {socket.NativeErrorCode}",
        _ when error.InnerException is SocketException inner => $"{error.GetType().Name}: {inner.SocketErrorCode}, errno {inner.NativeErrorCode}",
        _ => $"{error.GetType().Name}: {error.Message}",
    };

    private TaskCompletionSource<ConnectionPlan> PairOf(int port) =>
        pairing.GetOrAdd(port, _ => new TaskCompletionSource<ConnectionPlan>(TaskCreationOptions.RunContinuationsAsynchronously));
}

/// <summary>
/// Checks the bytes one end receives against the stream its peer writes, as they arrive: every byte must be the
/// pattern's byte at its offset, and nothing may come after the stream's last byte.
/// </summary>
public sealed class InboundCheck(StressRound round, ConnectionPlan plan, EndRole reader)
{
    private readonly int stream = plan.StreamOf(ConnectionPlan.Peer(reader));
    private readonly long expected = plan.BytesOf(ConnectionPlan.Peer(reader));

    public long Received { get; private set; }

    public bool Complete => Received == expected;

    public bool Failed { get; private set; }

    /// <summary>Takes the next bytes; false (and the round told why) when they are not the stream's next bytes.</summary>
    public bool Accept(ReadOnlySpan<byte> data)
    {
        if (Failed)
        {
            return false;
        }

        var inStream = (int)Math.Min(data.Length, expected - Received);
        var mismatch = round.Pattern.FirstMismatch(stream, Received, data[..inStream]);
        if (mismatch >= 0)
        {
            Report(data, mismatch, $"expected 0x{round.Pattern.ByteAt(stream, Received + mismatch):x2}, got 0x{data[mismatch]:x2}");
            return false;
        }

        if (inStream < data.Length)
        {
            Report(data, inStream, $"{data.Length - inStream} B after the stream's last byte (it is {expected} B long)");
            return false;
        }

        Received += data.Length;
        return true;
    }

    private void Report(ReadOnlySpan<byte> data, int index, string what)
    {
        Failed = true;
        var offset = Received + index;
        var origin = round.Pattern.Identify(data, index) switch
        {
            null => "the bytes there decode to no stream of this round (torn or foreign)",
            var (at, s, o) when s == stream && at == index =>
                $"it is this stream's own byte {o} ({(o > offset ? "skipped ahead" : "repeated")} by {Math.Abs(o - offset)} B)",
            var (at, s, o) when s == stream =>
                $"the bytes from offset {offset + (at - index)} on are this stream's own bytes from {o}",
            var (at, s, o) when at == index =>
                $"it belongs to {ConnectionPlan.DescribeStream(s)} at offset {o}: crosstalk",
            var (at, s, o) =>
                $"the bytes from offset {offset + (at - index)} on belong to {ConnectionPlan.DescribeStream(s)} from offset {o}: crosstalk",
        };
        round.Fail($"{ConnectionPlan.DescribeStream(stream)}, read by the {reader.ToString().ToLowerInvariant()}: wrong byte at offset {offset}: {what}; {origin}. Plan: {plan}");
    }
}

/// <summary>The stream one end writes: its bytes, its message sizes, and where it stops.</summary>
public sealed class OutboundStream(StressRound round, ConnectionPlan plan, EndRole writer)
{
    private readonly int stream = plan.StreamOf(writer);
    private readonly Random random = StressSettings.RandomFor(round.Seed, plan.Id, (long)writer, 0x3717e);

    public long Total { get; } = plan.BytesOf(writer);

    /// <summary>Where this end cuts the connection, or -1.</summary>
    public long CutPoint { get; } = plan.CutPointOf(writer);

    /// <summary>Bytes handed to the transport so far (written to it, not necessarily sent).</summary>
    public long Written { get; private set; }

    /// <summary>True when the next write would pass the cut point: time to cut.</summary>
    public bool AtCut => Written == CutPoint;

    public bool Finished => Written == Total;

    /// <summary>The owning producer's random source: sizes, flushes, burst lengths.</summary>
    public Random Random => random;

    /// <summary>Draws the next message's size and fills <paramref name="destination"/> with its bytes; returns the size.</summary>
    public int NextSize() => StressRound.NextMessageSize(random, (CutPoint >= 0 ? CutPoint : Total) - Written);

    public void Fill(Span<byte> destination)
    {
        round.Pattern.Fill(stream, Written, destination);
        Written += destination.Length;
    }

    public int NextBurst() => random.Next(1, StressRound.MaxBurstMessages + 1);

    public bool FlushNow() => random.Next(StressRound.FlushOneIn) == 0;
}
