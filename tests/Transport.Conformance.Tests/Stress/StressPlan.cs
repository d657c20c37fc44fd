namespace Transport.Conformance.Tests.Stress;

/// <summary>Which end of a connection: the one that connected or the one that accepted.</summary>
public enum EndRole
{
    Client,
    Server,
}

/// <summary>How an end cuts its connection short in the middle of its stream.</summary>
public enum CutKind
{
    /// <summary>SO_LINGER 0 and close: RST, unsent bytes dropped. The peer keeps an exact prefix of what was written.</summary>
    Reset,

    /// <summary>
    /// Every write completed, then the output ends. A plain socket shuts its output down (shutdown(SHUT_WR)) and reads
    /// on: a true FIN, after which its peer must have every byte, then EOF. A channel closes, as an application
    /// would: a FIN, or an RST when bytes it was sent lie unread (which the stock transport may read back as EOF), so
    /// its peer keeps an exact prefix.
    /// </summary>
    Fin,
}

/// <summary>One end stops after writing exactly <see cref="AtByte"/> bytes of its stream and ends the connection.</summary>
public sealed record Cut(EndRole By, CutKind Kind, long AtByte);

/// <summary>Everything a connection does, fixed by the round's seed before any socket exists.</summary>
public sealed record ConnectionPlan(
    int Id,
    long ClientBytes,
    long ServerBytes,
    int ClientReceiveBuffer,
    int ServerReceiveBuffer,
    int ClientSendBuffer,
    int ServerSendBuffer,
    Cut? Cut)
{
    /// <summary>The stream an end writes: two per connection, so a byte names both its connection and its direction.</summary>
    public int StreamOf(EndRole writer) => (Id * 2) + (writer == EndRole.Client ? 0 : 1);

    public long BytesOf(EndRole writer) => writer == EndRole.Client ? ClientBytes : ServerBytes;

    public int ReceiveBufferOf(EndRole end) => end == EndRole.Client ? ClientReceiveBuffer : ServerReceiveBuffer;

    public int SendBufferOf(EndRole end) => end == EndRole.Client ? ClientSendBuffer : ServerSendBuffer;

    /// <summary>Where <paramref name="writer"/> stops short, or -1 when it writes its whole stream.</summary>
    public long CutPointOf(EndRole writer) => Cut is { } cut && cut.By == writer ? cut.AtByte : -1;

    public static EndRole Peer(EndRole end) => end == EndRole.Client ? EndRole.Server : EndRole.Client;

    /// <summary>"connection 17 server→client", for stream ids as <see cref="StreamOf"/> numbers them.</summary>
    public static string DescribeStream(int stream) => $"connection {stream / 2} {(stream % 2 == 0 ? "client→server" : "server→client")}";

    public override string ToString() =>
        $"connection {Id}: {ClientBytes} B client→server, {ServerBytes} B server→client, SO_RCVBUF client {ClientReceiveBuffer} server {ServerReceiveBuffer}, " +
        $"SO_SNDBUF client {ClientSendBuffer} server {ServerSendBuffer}" +
        (Cut is { } c ? $", {c.By} cuts with {c.Kind} after {c.AtByte} B" : string.Empty);
}

/// <summary>The sizes and odds a round is drawn from.</summary>
public sealed record StressShape(
    int Connections,
    long MinStreamBytes,
    long MaxStreamBytes,
    int MinSocketBuffer,
    int MaxSocketBuffer,
    int CutOneIn)
{
    /// <summary>
    /// The short form's shape: 200 connections of up to 256 KB each way; socket buffers from 8 KB (readers fall behind
    /// at once) to 256 KB; one connection in five cut short by one end. Not smaller: below about 8 KB the receive
    /// window stays under loopback's 64 KB segment size, and Linux's sender then waits for its zero-window probes,
    /// whose backoff doubles (measured: one connection of 300 KB took 20 s with 4 KB buffers on both sides). That is
    /// the kernel's behaviour, the same for both transports, and it would only slow the cases down.
    /// </summary>
    public static StressShape Default { get; } = new(
        Connections: 200,
        MinStreamBytes: 1024,
        MaxStreamBytes: 256 * 1024,
        MinSocketBuffer: 8 * 1024,
        MaxSocketBuffer: 256 * 1024,
        CutOneIn: 5);

    /// <summary>Draws every connection's plan from <paramref name="seed"/>.</summary>
    public IReadOnlyList<ConnectionPlan> Draw(long seed)
    {
        var random = StressSettings.RandomFor(seed, 0x91a2);
        var plans = new ConnectionPlan[Connections];
        for (var id = 0; id < Connections; id++)
        {
            var clientBytes = random.NextInt64(MinStreamBytes, MaxStreamBytes + 1);
            var serverBytes = random.NextInt64(MinStreamBytes, MaxStreamBytes + 1);
            Cut? cut = null;
            if (random.Next(CutOneIn) == 0)
            {
                var by = random.Next(2) == 0 ? EndRole.Client : EndRole.Server;
                var kind = random.Next(2) == 0 ? CutKind.Reset : CutKind.Fin;

                // Strictly inside the stream, so the peer can never mistake a cut for a complete stream.
                var length = by == EndRole.Client ? clientBytes : serverBytes;
                cut = new Cut(by, kind, random.NextInt64(0, length));
            }

            plans[id] = new ConnectionPlan(
                id,
                clientBytes,
                serverBytes,
                LogUniform(random, MinSocketBuffer, MaxSocketBuffer),
                LogUniform(random, MinSocketBuffer, MaxSocketBuffer),
                LogUniform(random, MinSocketBuffer, MaxSocketBuffer),
                LogUniform(random, MinSocketBuffer, MaxSocketBuffer),
                cut);
        }

        return plans;
    }

    // Small buffers as often as large ones: the small ones are what make writers meet a full socket.
    private static int LogUniform(Random random, int min, int max) =>
        (int)Math.Round(Math.Exp(random.NextDouble() * (Math.Log(max) - Math.Log(min))) * min);
}
