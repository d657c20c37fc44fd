using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using TcpConnections;
using Xunit.Abstractions;

namespace GameServer.Tests;

/// <summary>
/// What Linux does to a live reader with a small receive window when the sender sets TCP_USER_TIMEOUT, the reason
/// <c>Tcp:UserTimeoutMs</c> is off by default (docs/CLOSE-HANDLING.md, "Dead peers"). Plain sockets on loopback, no
/// game server: the sender writes without pause, the reader (4 KB receive buffer) reads for 200 ms and stalls for 1 s,
/// over and over, as the outside test's client did.
/// </summary>
public class KernelUserTimeoutTests(ITestOutputHelper output)
{
    private const int ReceiveBufferBytes = 4096;
    private const int UserTimeoutMs = 1500;
    private const int ETimedOut = 110;

    /// <summary>Far less than the reader takes in after its first stall (about 10 MB here), far more than nothing.</summary>
    private const long ALotOfBytes = 1024 * 1024;

    private static readonly TimeSpan Burst = TimeSpan.FromMilliseconds(200);
    private static readonly TimeSpan Stall = TimeSpan.FromMilliseconds(1000);

    // The kernel's clock starts at the first zero-window probe, one RTO (200 ms on loopback) into the first stall,
    // and is checked only when a probe timer fires, which happens only while the window is shut: the end comes at a
    // probe in the stall that follows the timeout, so up to one burst and one stall later. The second is for a loaded
    // 2-core machine.
    private static readonly TimeSpan LatestEnd = TimeSpan.FromMilliseconds(UserTimeoutMs) + Burst + Stall + TimeSpan.FromSeconds(1);

    [Fact]
    public async Task UserTimeout_EndsALiveReaderWithASmallWindow_AboutTheTimeoutAfterItsFirstStall_ThoughItKeepsReading()
    {
        var run = await SlowReaderRun.RunAsync(UserTimeoutMs, LatestEnd + TimeSpan.FromSeconds(3));
        output.WriteLine(run.Describe());

        Assert.True(run.SendErrno is not null, "the sender's kernel never gave up");
        Assert.Equal(ETimedOut, run.SendErrno);
        var afterFirstStall = run.SendFailedAt!.Value - run.FirstStallAt!.Value;
        Assert.InRange(afterFirstStall, TimeSpan.FromMilliseconds(UserTimeoutMs), LatestEnd);

        // It was no dead peer: it went on reading, megabytes of it, after the stall that started the kernel's clock.
        Assert.True(run.BytesReadAfterFirstStall >= ALotOfBytes, $"read only {run.BytesReadAfterFirstStall} bytes after its first stall");
    }

    [Fact]
    public async Task WithoutUserTimeout_TheSameReaderLives_AndItsKernelLeavesAtMostOneProbeUnanswered()
    {
        var run = await SlowReaderRun.RunAsync(0, LatestEnd + TimeSpan.FromSeconds(1));
        output.WriteLine(run.Describe());

        Assert.Null(run.SendErrno);
        Assert.True(run.BytesReadAfterFirstStall >= ALotOfBytes, $"read only {run.BytesReadAfterFirstStall} bytes after its first stall");

        // What the heartbeat relies on to tell this reader from a dead peer (HeartbeatHandler): while our output waits
        // behind its shut window, its kernel answers the zero-window probes. It answers one probe per 500 ms at most
        // (tcp_invalid_ratelimit), so one can stay unanswered, never two; nothing is ever retransmitted; and the
        // last ACK can be most of a stall old.
        Assert.Contains(run.Samples, s => s.Info.NotSentBytes > 0 && s.Info.Probes > 0);
        Assert.All(run.Samples, s => Assert.True(s.Info.Probes <= 1, $"{s.Info.Probes} probes unanswered at {s.At.TotalMilliseconds:0} ms"));
        Assert.All(run.Samples, s => Assert.Equal(0, s.Info.Retransmits));
    }

    /// <summary>
    /// One sender, one bursty reader, on loopback. The sender writes until its send fails or the run ends; the reader
    /// reads for <see cref="Burst"/> and stalls for <see cref="Stall"/>; the sender's TCP_INFO is sampled meanwhile.
    /// </summary>
    private sealed class SlowReaderRun
    {
        private static readonly TimeSpan SampleEvery = TimeSpan.FromMilliseconds(20);
        private readonly Stopwatch clock = Stopwatch.StartNew();
        private long bytesRead;
        private long bytesReadAfterFirstStall;

        public TimeSpan? FirstStallAt { get; private set; }

        public TimeSpan? SendFailedAt { get; private set; }

        public int? SendErrno { get; private set; }

        public long BytesRead => Interlocked.Read(ref bytesRead);

        public long BytesReadAfterFirstStall => Interlocked.Read(ref bytesReadAfterFirstStall);

        public List<(TimeSpan At, TcpInfo Info)> Samples { get; } = [];

        public static async Task<SlowReaderRun> RunAsync(int userTimeoutMs, TimeSpan runFor)
        {
            using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            listener.Listen();

            // The receive buffer must be set before connecting: the window scale is agreed in the handshake.
            using var reader = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { ReceiveBufferSize = ReceiveBufferBytes };
            var accepting = listener.AcceptAsync();
            await reader.ConnectAsync(listener.LocalEndPoint!);
            using var sender = await accepting;
            if (userTimeoutMs > 0)
            {
                var value = BitConverter.GetBytes(userTimeoutMs);
                sender.SetRawSocketOption(6, 18, value); // IPPROTO_TCP, TCP_USER_TIMEOUT (linux/tcp.h)
            }

            var run = new SlowReaderRun();
            using var stop = new CancellationTokenSource();
            var sending = Task.Run(() => run.SendAsync(sender, stop.Token));
            var reading = Task.Factory.StartNew(() => run.Read(reader, stop.Token), TaskCreationOptions.LongRunning);
            var sampling = Task.Run(() => run.SampleAsync(sender, stop.Token));

            // Until the sender's kernel gives up, or for the whole run.
            await Task.WhenAny(sending, Task.Delay(runFor));
            await stop.CancelAsync();
            await Task.WhenAll(sending, reading, sampling);
            return run;
        }

        public string Describe() =>
            $"first stall at {FirstStallAt?.TotalMilliseconds:0} ms; send failed at {SendFailedAt?.TotalMilliseconds:0} ms " +
            $"with errno {SendErrno?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "-"}; read {BytesRead} bytes, " +
            $"{BytesReadAfterFirstStall} after the first stall; sender's kernel at most: {Samples.Select(s => s.Info.Probes).DefaultIfEmpty().Max()} probes " +
            $"unanswered, {Samples.Select(s => s.Info.Retransmits).DefaultIfEmpty().Max()} retransmissions, backoff {Samples.Select(s => s.Info.Backoff).DefaultIfEmpty().Max()}, " +
            $"last ACK {Samples.Select(s => s.Info.SinceLastAck.TotalMilliseconds).DefaultIfEmpty().Max():0} ms ago";

        private async Task SendAsync(Socket sender, CancellationToken stop)
        {
            var chunk = new byte[64 * 1024];
            try
            {
                while (!stop.IsCancellationRequested)
                {
                    await sender.SendAsync(chunk, SocketFlags.None, stop);
                }
            }
            catch (OperationCanceledException)
            {
            }
            catch (SocketException ex) when (!stop.IsCancellationRequested)
            {
                SendFailedAt = clock.Elapsed;
                SendErrno = ex.NativeErrorCode;
            }
            catch (SocketException)
            {
            }
        }

        private void Read(Socket reader, CancellationToken stop)
        {
            var buffer = new byte[64 * 1024];
            var pollMicroseconds = (int)TimeSpan.FromMilliseconds(10).TotalMicroseconds;
            try
            {
                while (!stop.IsCancellationRequested)
                {
                    var burstEnd = clock.Elapsed + Burst;
                    while (clock.Elapsed < burstEnd && !stop.IsCancellationRequested)
                    {
                        if (!reader.Poll(pollMicroseconds, SelectMode.SelectRead))
                        {
                            continue;
                        }

                        var n = reader.Receive(buffer);
                        if (n == 0)
                        {
                            return;
                        }

                        Interlocked.Add(ref bytesRead, n);
                        if (FirstStallAt is not null)
                        {
                            Interlocked.Add(ref bytesReadAfterFirstStall, n);
                        }
                    }

                    FirstStallAt ??= clock.Elapsed;

                    // The stall is the behaviour under test, not a wait for something; it ends early when the run does.
                    stop.WaitHandle.WaitOne(Stall);
                }
            }
            catch (SocketException)
            {
                // The sender's kernel ended the connection; the run records that on the sender's side.
            }
        }

        private async Task SampleAsync(Socket sender, CancellationToken stop)
        {
            using var timer = new PeriodicTimer(SampleEvery);
            try
            {
                while (await timer.WaitForNextTickAsync(stop))
                {
                    if (SocketAccess.TryGetTcpInfo(sender, out var info))
                    {
                        lock (Samples)
                        {
                            Samples.Add((clock.Elapsed, info));
                        }
                    }
                }
            }
            catch (OperationCanceledException)
            {
            }
        }
    }
}
