using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using GameProtocol;
using Transport.Conformance.Tests.Stress;

namespace GameServer.Tests.Infrastructure;

/// <summary>How an echo stress client leaves.</summary>
public enum EchoEnding
{
    /// <summary>Every Echo answered, then the Goodbye handshake.</summary>
    Goodbye,

    /// <summary>shutdown(SHUT_WR) after <see cref="EchoPlan.CutAfterFrames"/> Echos, reading on until the server closes.</summary>
    Fin,

    /// <summary>SO_LINGER 0 and close after <see cref="EchoPlan.CutAfterFrames"/> Echos were sent.</summary>
    Reset,
}

/// <summary>
/// One client's part of a round, fixed by the seed: its Echo payload sizes, its receive buffer, the send buffer of the
/// server's side of its connection, how it leaves.
/// </summary>
public sealed record EchoPlan(int Id, IReadOnlyList<int> PayloadSizes, int ReceiveBuffer, int ServerSendBuffer, EchoEnding Ending, int CutAfterFrames)
{
    public long PayloadBytes => PayloadSizes.Sum(s => (long)s);

    public override string ToString() =>
        $"client {Id}: {PayloadSizes.Count} Echos, {PayloadBytes} B of payload, SO_RCVBUF {ReceiveBuffer}, server SO_SNDBUF {ServerSendBuffer}, " +
        (Ending == EchoEnding.Goodbye ? "Goodbye at the end" : $"{Ending} after {CutAfterFrames} Echos");
}

/// <summary>What a client saw, for the round's judgement.</summary>
public sealed record EchoReport(EchoPlan Plan, long FramesSent, long EchoesVerified, int PartialTail, Goodbye? ServerGoodbye, bool SawEndOfStream, string? Error, int PingsIgnored)
{
    public override string ToString() =>
        $"{Plan}; sent {FramesSent} frames, {EchoesVerified} Echos came back verified{(PartialTail > 0 ? $" and the first {PartialTail} B of the next" : string.Empty)}, " +
        $"server Goodbye {(ServerGoodbye is { } g ? $"{g.Reason}/{g.FramesReceived}" : "none")}, " +
        $"{(SawEndOfStream ? "EOF" : "no EOF")}{(Error is null ? string.Empty : $", {Error}")}{(PingsIgnored > 0 ? $", {PingsIgnored} Pings ignored" : string.Empty)}";
}

/// <summary>
/// A raw-socket game client that sends Echos whose payloads carry its own seeded byte pattern and checks every
/// answer byte for byte against the frame it sent: the same length header, the same MessagePack envelope, the same
/// payload, in the same order. Its reader takes random-sized reads and pauses at random on a small receive buffer,
/// so the server's writes keep meeting a full socket; its writer keeps at most a window of bytes unanswered, so the
/// server's queue for it stays bounded.
/// </summary>
public sealed class EchoStressClient
{
    /// <summary>Largest Echo payload: the frame limit less the envelope (fixarray, tag, body array, seq, bin header).</summary>
    public const int MaxPayloadBytes = Framing.DefaultMaxFrameBytes - 16;

    /// <summary>Payload bytes sent and not yet answered, at most: the server queues no more than this for a client.</summary>
    public const int WindowBytes = 192 * 1024;

    /// <summary>Frames the writer puts into one send, at most: the server's decoder gets several per read.</summary>
    public const int MaxFramesPerSend = 4;

    /// <summary>A reader pauses after about one read in this many.</summary>
    public const int PauseOneIn = 6;

    /// <summary>The longest pause: far below the slow-consumer timeout, long enough for the server's socket to fill.</summary>
    public const int MaxPauseMs = 25;

    private const int MaxReadBytes = 64 * 1024;

    // A Ping or Goodbye is a few dozen bytes; a frame header that announces neither an Echo nor one of those is wrong.
    private const int MaxControlFrameBytes = 128;

    private readonly StreamPattern pattern;
    private readonly long seed;
    private readonly Action<string> fail;
    private readonly ConcurrentQueue<SentEcho> expected = new();
    private readonly Socket socket;
    private readonly TaskCompletionSource started = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource welcomed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private TaskCompletionSource windowOpened = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private long unanswered;
    private long framesSent;
    private long echoesVerified;
    private int pingsIgnored;
    private Goodbye? serverGoodbye;
    private bool sawEndOfStream;
    private int partialTail;
    private string? error;
    private int closed;
    private volatile bool readerEnded;
    private bool failed;

    private EchoStressClient(EchoPlan plan, StreamPattern pattern, long seed, Socket socket, Action<string> fail)
    {
        Plan = plan;
        this.pattern = pattern;
        this.seed = seed;
        this.socket = socket;
        this.fail = fail;
    }

    public EchoPlan Plan { get; }

    public EndPoint LocalEndPoint => socket.LocalEndPoint!;

    /// <summary>Completes when the server's Welcome has arrived.</summary>
    public Task Welcomed => welcomed.Task;

    /// <summary>Completes when the client is closed, with what it saw.</summary>
    public Task<EchoReport> Finished { get; private set; } = null!;

    /// <summary>Connects, says Hello and reads the Welcome; the Echos wait for <see cref="Start"/>.</summary>
    public static async Task<EchoStressClient> ConnectAsync(EchoPlan plan, StreamPattern pattern, long seed, IPEndPoint server, Action<string> fail)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp)
        {
            NoDelay = true,
            ReceiveBufferSize = plan.ReceiveBuffer,
        };
        await socket.ConnectAsync(server);
        var client = new EchoStressClient(plan, pattern, seed, socket, fail);
        await socket.SendAsync(Wire.Frame(new Hello(1, $"stress{plan.Id}", null)), SocketFlags.None);
        client.framesSent = 1;
        client.Finished = client.RunAsync();
        return client;
    }

    public void Start() => started.TrySetResult();

    /// <summary>Resets the connection (the round failed or timed out).</summary>
    public void Abort() => Close(abortive: true);

    private async Task<EchoReport> RunAsync()
    {
        var reading = Task.Run(ReadAsync);
        var writing = Task.Run(WriteAsync);
        await Task.WhenAll(reading, writing);
        Close(abortive: false);
        return new EchoReport(Plan, framesSent, echoesVerified, partialTail, serverGoodbye, sawEndOfStream, error, pingsIgnored);
    }

    private async Task WriteAsync()
    {
        await started.Task;
        var random = StressSettings.RandomFor(seed, Plan.Id, 0x3717e);
        var stream = Plan.Id;
        long offset = 0;
        var frames = Plan.Ending == EchoEnding.Goodbye ? Plan.PayloadSizes.Count : Plan.CutAfterFrames;
        var next = 0;
        try
        {
            while (next < frames && Volatile.Read(ref closed) == 0)
            {
                var batch = new List<SentEcho>();
                var batchBytes = 0L;
                for (var take = random.Next(1, MaxFramesPerSend + 1); take > 0 && next < frames; take--, next++)
                {
                    var payload = new byte[Plan.PayloadSizes[next]];
                    pattern.Fill(stream, offset, payload);
                    offset += payload.Length;
                    batch.Add(new SentEcho(Wire.Frame(new Echo(next, payload)), payload.Length));
                    batchBytes += payload.Length;
                }

                // Keep the server's queue bounded: wait while the answers lag more than the window behind.
                while (WindowFull(batchBytes) && !readerEnded)
                {
                    var opened = Volatile.Read(ref windowOpened).Task;
                    if (WindowFull(batchBytes) && !readerEnded)
                    {
                        await opened;
                    }
                }

                if (readerEnded)
                {
                    return;
                }

                foreach (var echo in batch)
                {
                    expected.Enqueue(echo);
                }

                Interlocked.Add(ref unanswered, batchBytes);
                await socket.SendAsync(batch.SelectMany(e => e.Frame).ToArray(), SocketFlags.None);
                Interlocked.Add(ref framesSent, batch.Count);
            }
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            return; // the reader says how the connection ended
        }

        if (Plan.Ending == EchoEnding.Reset)
        {
            Close(abortive: true);
        }
        else if (Plan.Ending == EchoEnding.Fin)
        {
            try
            {
                socket.Shutdown(SocketShutdown.Send);
            }
            catch (SocketException)
            {
                // reset first: the reader says so
            }
        }
    }

    private async Task ReadAsync()
    {
        var random = StressSettings.RandomFor(seed, Plan.Id, 0x4ead);
        var buffer = new byte[2 * (Framing.DefaultMaxFrameBytes + Framing.HeaderBytes)];
        int start = 0, end = 0;
        while (true)
        {
            // Every complete frame in the buffer, in order.
            while (end - start >= Framing.HeaderBytes && !failed)
            {
                var length = (int)Math.Min(BinaryPrimitives.ReadUInt32BigEndian(buffer.AsSpan(start)), int.MaxValue);
                expected.TryPeek(out var due);
                if (length > MaxControlFrameBytes && (due is null ? length > Framing.DefaultMaxFrameBytes : length != due.Frame.Length - Framing.HeaderBytes))
                {
                    // Judged on the header alone: a wrong length would leave the reader waiting for bytes that never come.
                    Fail(buffer.AsSpan(start, end - start), due, 0, $"a frame header announcing {length} B where {(due is null ? "no Echo" : $"an Echo of {due.Frame.Length - Framing.HeaderBytes} B")} was due");
                    break;
                }

                if (end - start < Framing.HeaderBytes + length)
                {
                    break; // the rest of the frame is still on its way
                }

                var frame = buffer.AsSpan(start, Framing.HeaderBytes + length);
                start += frame.Length;
                if (length <= MaxControlFrameBytes && TryDecode(frame) is { } control && control is not Echo)
                {
                    OnControlFrame(frame, control, due);
                    continue;
                }

                if (!welcomed.Task.IsCompleted || due is null)
                {
                    Fail(frame, due, 0, welcomed.Task.IsCompleted ? "a frame with no Echo due" : "a frame before the Welcome");
                    break;
                }

                if (!frame.SequenceEqual(due.Frame))
                {
                    Fail(frame, due, frame.CommonPrefixLength(due.Frame), "a wrong byte in an Echo");
                    break;
                }

                expected.TryDequeue(out _);
                echoesVerified++;
                Interlocked.Add(ref unanswered, -due.PayloadBytes);
                Interlocked.Exchange(ref windowOpened, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
                if (Plan.Ending == EchoEnding.Goodbye && echoesVerified == Plan.PayloadSizes.Count)
                {
                    await SayGoodbyeAsync();
                }
            }

            if (failed)
            {
                WakeWriter();
                Close(abortive: true);
                return;
            }

            // Room for the rest of a frame: move what is left to the front.
            if (start > 0)
            {
                buffer.AsSpan(start, end - start).CopyTo(buffer);
                end -= start;
                start = 0;
            }

            int read;
            try
            {
                read = await socket.ReceiveAsync(buffer.AsMemory(end, Math.Min(buffer.Length - end, random.Next(1, MaxReadBytes + 1))), SocketFlags.None);
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
            {
                error ??= Volatile.Read(ref closed) != 0 ? null : ex is SocketException s ? $"{s.SocketErrorCode}, errno {s.NativeErrorCode}" : ex.GetType().Name;
                WakeWriter();
                return;
            }

            if (read == 0)
            {
                sawEndOfStream = true;
                if (end > 0)
                {
                    // A server that closes on the client's FIN (stock DotNetty) may stop in the middle of a frame: still
                    // an exact prefix of what it was sending, and nothing after it. Only a Goodbye promised whole frames.
                    expected.TryPeek(out var due);
                    var tail = buffer.AsSpan(0, end);
                    if (Plan.Ending == EchoEnding.Goodbye || due is null || !due.Frame.AsSpan().StartsWith(tail))
                    {
                        Fail(tail, due, due is null ? 0 : tail.CommonPrefixLength(due.Frame), $"end of stream inside a frame ({end} B of it)");
                    }
                    else
                    {
                        partialTail = end;
                    }
                }

                WakeWriter();
                return;
            }

            end += read;
            if (random.Next(PauseOneIn) == 0)
            {
                // The pause is the behaviour under test: a reader that stops, so the server's socket fills.
                await Task.Delay(random.Next(1, MaxPauseMs + 1));
            }
        }
    }

    private static IMessage? TryDecode(ReadOnlySpan<byte> frame)
    {
        try
        {
            return ProtocolSerializer.Deserialize(frame[Framing.HeaderBytes..].ToArray());
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            return null;
        }
    }

    private void OnControlFrame(ReadOnlySpan<byte> frame, IMessage message, SentEcho? due)
    {
        switch (message)
        {
            case Welcome when !welcomed.Task.IsCompleted:
                welcomed.TrySetResult();
                break;
            case Ping:
                pingsIgnored++; // the heartbeat is set to an hour; an answer from here would interleave with the writer's sends
                break;
            case Goodbye goodbye when serverGoodbye is null:
                serverGoodbye = goodbye;
                break;
            default:
                Fail(frame, due, 0, $"an unexpected {message}");
                break;
        }
    }

    private async Task SayGoodbyeAsync()
    {
        // The writer has sent everything (every Echo is answered), so this is the only send now.
        await socket.SendAsync(Wire.Frame(new Goodbye("bye", 1 + echoesVerified + pingsIgnored)), SocketFlags.None);
        Interlocked.Increment(ref framesSent);
    }

    private void Fail(ReadOnlySpan<byte> received, SentEcho? due, int index, string what)
    {
        failed = true;
        var origin = pattern.Identify(received, index) switch
        {
            null => "the bytes there decode to no client's payload (a header, an envelope, or torn)",
            var (at, s, o) when s == Plan.Id => $"from {at - index} B on they are this client's own payload bytes from offset {o}",
            var (at, s, o) => $"from {at - index} B on they are client {s}'s payload bytes from offset {o}: crosstalk",
        };
        var expectation = due is null ? "no Echo was due" : $"expected 0x{(index < due.Frame.Length ? due.Frame[index] : 0):x2}, got 0x{(index < received.Length ? received[index] : 0):x2} at byte {index} of the frame";
        fail($"client {Plan.Id}, after {echoesVerified} verified Echos: {what}; {expectation}; {origin}. Plan: {Plan}");
    }

    private bool WindowFull(long more)
    {
        var waiting = Interlocked.Read(ref unanswered);
        return waiting > 0 && waiting + more > WindowBytes;
    }

    private void WakeWriter()
    {
        readerEnded = true;
        Volatile.Read(ref windowOpened).TrySetResult();
    }

    private void Close(bool abortive)
    {
        if (Interlocked.Exchange(ref closed, 1) != 0)
        {
            return;
        }

        WakeWriter();
        if (abortive)
        {
            socket.LingerState = new LingerOption(true, 0);
        }
        else
        {
            // .NET on Linux closes a socket with a receive still pending by disconnecting it (an RST) unless it was
            // shut down for sending first.
            try
            {
                socket.Shutdown(SocketShutdown.Send);
            }
            catch (SocketException)
            {
                // already reset
            }
        }

        socket.Dispose();
    }
}

/// <summary>A frame as sent, to compare its answer with, and its payload's size for the window.</summary>
internal sealed record SentEcho(byte[] Frame, int PayloadBytes);
