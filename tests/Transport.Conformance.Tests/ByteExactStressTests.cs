using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using DotNetty.Buffers;
using DotNetty.Common;
using Transport.Conformance.Tests.Stress;
using Xunit.Abstractions;

namespace Transport.Conformance.Tests;

/// <summary>
/// Hundreds of connections at once, each carrying its own seeded byte pattern both ways, with readers that pause at
/// random on small receive buffers (so writers keep meeting full sockets: EAGAIN, partial writes, EPOLLOUT), writes
/// from the event loop and from the thread pool, and connections cut short by RST or FIN. Every byte must arrive at
/// its own offset on its own connection; a byte from elsewhere fails the case at once and names where it came from.
/// The same case runs on both transports, with the transport as server, as client, and as both.
/// <para>
/// Short form: one round per case. <c>STRESS_SECONDS</c> repeats rounds with derived seeds; <c>STRESS_SEED</c> reruns
/// one (<c>./run.sh stress</c>). The plan is reproducible from the seed; the threads' interleaving is not, so a rare
/// failure may need its seed run a few times.
/// </para>
/// </summary>
public sealed class ByteExactStressTests(ITestOutputHelper output) : IDisposable
{
    private const string Project = "tests/Transport.Conformance.Tests";

    /// <summary>At least this share of the channels that write must go over their high-water mark, or the case did not stress writes.</summary>
    private const double MinUnwritableShare = 0.1;

    private static readonly TimeSpan DescriptorSettleTime = TimeSpan.FromSeconds(5);
    private static readonly TimeSpan DescriptorPollInterval = TimeSpan.FromMilliseconds(50);

    private readonly ResourceLeakDetector.DetectionLevel leakLevel = SwitchLeakDetection(ResourceLeakDetector.DetectionLevel.Paranoid);

    [Theory]
    [InlineData(TransportKind.Sockets, 1, StressSide.ServerWithSocketClients)]
    [InlineData(TransportKind.Sockets, 2, StressSide.ServerWithSocketClients)]
    [InlineData(TransportKind.Sockets, 1, StressSide.ClientWithSocketServer)]
    [InlineData(TransportKind.Sockets, 2, StressSide.ClientWithSocketServer)]
    [InlineData(TransportKind.Sockets, 1, StressSide.ClientAndServer)]
    [InlineData(TransportKind.Sockets, 2, StressSide.ClientAndServer)]
    [InlineData(TransportKind.Epoll, 1, StressSide.ServerWithSocketClients)]
    [InlineData(TransportKind.Epoll, 2, StressSide.ServerWithSocketClients)]
    [InlineData(TransportKind.Epoll, 1, StressSide.ClientWithSocketServer)]
    [InlineData(TransportKind.Epoll, 2, StressSide.ClientWithSocketServer)]
    [InlineData(TransportKind.Epoll, 1, StressSide.ClientAndServer)]
    [InlineData(TransportKind.Epoll, 2, StressSide.ClientAndServer)]
    public async Task EveryByteArrivesOnItsOwnConnection_AtItsOwnOffset_ThroughFullSocketsPausesAndCuts(TransportKind transport, int workerLoops, StressSide side)
    {
        var name = $"{transport} {side}, {workerLoops} worker loop(s)";
        var seed = StressSettings.SeedOr(DefaultSeed(transport, workerLoops, side));
        var filter = $"FullyQualifiedName~{nameof(ByteExactStressTests)}&DisplayName~transport: {transport}, workerLoops: {workerLoops}, side: {side}";
        var longRun = StressSettings.LongRun;
        output.WriteLine($"{name}: seed {seed}{(longRun is { } l ? $", rounds for {l.TotalSeconds:0} s" : string.Empty)}");

        WarmUpSockets();

        // Whatever an earlier case left to be finalised is reported now, before this case's mark.
        CollectGarbage();
        var descriptorsBefore = OpenDescriptors.Snapshot();
        var logMark = DotNettyLog.Count;
        var clock = Stopwatch.StartNew();
        for (var round = 0; round == 0 || (longRun is { } run && clock.Elapsed < run); round++)
        {
            var roundSeed = StressSettings.RoundSeed(seed, round);
            var result = await StressRunner.RunAsync(transport, workerLoops, side, roundSeed, StressShape.Default);
            output.WriteLine($"round {round}: {result}");
            var rerun = StressSettings.RerunHint(roundSeed, Project, filter);
            Assert.True(
                result.Failures.Count == 0,
                $"{name}, round {round}, seed {roundSeed}: {result.FailureCount} failure(s); the first:\n  " +
                string.Join("\n  ", result.Failures.Take(8)) + $"\n{result}\n{rerun}");
            Assert.True(
                result.UnwritableChannels >= result.ChannelWriters * MinUnwritableShare,
                $"{name}, seed {roundSeed}: only {result.UnwritableChannels} of {result.ChannelWriters} channels ever went unwritable: the writers never met full sockets, so the case proved nothing\n{rerun}");
        }

        // Every buffer the rounds took must have gone back: a collection now makes the detector report any that did not.
        CollectGarbage();

        var leaks = DotNettyLog.Since(logMark).Where(DotNettyLog.IsLeakReport).ToList();
        Assert.True(leaks.Count == 0, $"{name}, seed {seed}: {leaks.Count} leaked buffer(s):\n{string.Join("\n", leaks.Take(3).Select(l => l.Message))}");

        var opened = await OpenedSinceAsync(descriptorsBefore);
        Assert.True(
            opened.Count == 0,
            $"{name}, seed {seed}: {opened.Count} descriptor(s) opened by the case still open after every channel, socket and loop was closed: " +
            OpenDescriptors.Describe(opened));
    }

    [Fact]
    public void StreamPattern_NamesTheStreamAndOffset_OfAMisplacedByte()
    {
        // The failure messages rest on this: a byte that landed elsewhere is traced back to its own stream and offset.
        var pattern = new StreamPattern(seed: 42, streamCount: 400);
        var foreign = new byte[100];
        pattern.Fill(stream: 317, offset: 12_345, foreign);
        var received = new byte[64];
        pattern.Fill(stream: 8, offset: 1000, received);
        foreign.AsSpan(3, 40).CopyTo(received.AsSpan(20));

        var mismatch = pattern.FirstMismatch(stream: 8, offset: 1000, received);
        Assert.Equal(20, mismatch);

        // Byte 20 is stream 317's byte 12,348, in a word torn by the splice; the first whole word after it names the source.
        Assert.Equal((24, 317, 12_352L), pattern.Identify(received, mismatch));
        Assert.Equal(-1, pattern.FirstMismatch(stream: 8, offset: 1000, received.AsSpan(0, 20)));
    }

    [Fact]
    public void LeakDetection_ReportsABufferDroppedUnreleased()
    {
        // The control for the cases' leak check: under this class's paranoid detection a dropped buffer is reported, from
        // the finalizer the detector attaches to it.
        CollectGarbage();
        var mark = DotNettyLog.Count;
        DropABuffer();
        CollectGarbage();

        Assert.Contains(DotNettyLog.Since(mark), DotNettyLog.IsLeakReport);
    }

    [Fact]
    public void OpenDescriptors_SeeASocketLeftOpen_AndNotOnceItIsClosed()
    {
        // The control for the cases' descriptor check.
        var before = OpenDescriptors.Snapshot();
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        var opened = OpenDescriptors.OpenedSince(before);
        Assert.Contains(opened.Values, target => target.StartsWith("socket:", StringComparison.Ordinal));
        socket.Dispose();
        Assert.Empty(OpenDescriptors.OpenedSince(before));
    }

    public void Dispose() => SwitchLeakDetection(leakLevel);

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void DropABuffer() => PooledByteBufferAllocator.Default.Buffer(64).WriteInt(42);

    /// <summary>
    /// Distinct per case, fixed, so that a run without <c>STRESS_SEED</c> is the same plan every time.
    /// </summary>
    private static long DefaultSeed(TransportKind transport, int workerLoops, StressSide side) =>
        7000 + (100 * (int)transport) + (10 * workerLoops) + (int)side;

    private static ResourceLeakDetector.DetectionLevel SwitchLeakDetection(ResourceLeakDetector.DetectionLevel level)
    {
        var previous = ResourceLeakDetector.Level;
        ResourceLeakDetector.Level = level;
        return previous;
    }

    /// <summary>
    /// The runtime opens its socket engine's descriptors (an epoll set and a pipe) with the first asynchronous socket
    /// operation in the process, and keeps them: made before the count, they are not mistaken for a leak.
    /// </summary>
    private static void WarmUpSockets()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen();
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        var accept = listener.AcceptAsync();
        client.Connect(listener.LocalEndPoint!);
        accept.Result.Dispose();
    }

    /// <summary>
    /// The descriptors open now that were not open before. A disposed .NET socket gives its descriptor back when its
    /// last pending operation lets go of the handle, which no task reports; so the listing is taken again until
    /// nothing new is left, for a bounded time.
    /// </summary>
    private static async Task<IReadOnlyDictionary<int, string>> OpenedSinceAsync(IReadOnlyDictionary<int, string> before)
    {
        var settle = Stopwatch.StartNew();
        var opened = OpenDescriptors.OpenedSince(before);
        while (opened.Count > 0 && settle.Elapsed < DescriptorSettleTime)
        {
            await Task.Delay(DescriptorPollInterval);
            opened = OpenDescriptors.OpenedSince(before);
        }

        return opened;
    }

    // DotNetty reports a leaked buffer from a finalizer; the second pass collects what the first pass's finalizers freed.
    private static void CollectGarbage()
    {
        for (var i = 0; i < 2; i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }
    }
}
