using System.Net;
using System.Net.Sockets;

namespace Transport.Conformance.Tests.Stress;

/// <summary>
/// One end of a stressed connection on a plain .NET <see cref="Socket"/>: the reference the transports are held to.
/// Its reader takes random-sized reads and stops calling Receive for a while at random; its writer sends the stream
/// in random-sized messages. Cuts: RST is SO_LINGER 0 and close; FIN is shutdown(SHUT_WR) after every send
/// completed, reading on until the peer closes.
/// </summary>
public sealed class SocketEnd : IStressEnd
{
    private const int MaxReadBytes = 64 * 1024;

    private readonly StressRound round;
    private readonly Socket socket;
    private readonly TaskCompletionSource<EndReport> ended = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource started = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private ConnectionPlan? plan;
    private InboundCheck? inbound;
    private OutboundStream? outbound;
    private int closed;
    private int finishedParts;
    private volatile bool writesCompleted;
    private volatile bool finAfterEveryWrite;
    private EndOutcome outcome = EndOutcome.Open;
    private string? error;

    private SocketEnd(StressRound round, Socket socket, EndRole role)
    {
        this.round = round;
        this.socket = socket;
        Role = role;
    }

    public EndRole Role { get; }

    public ConnectionPlan? Plan => plan;

    public Task<EndReport> Ended => ended.Task;

    /// <summary>Connects with the plan's socket buffers (set before connecting, so the window scale follows them).</summary>
    public static async Task<SocketEnd> ConnectAsync(StressRound round, ConnectionPlan plan, EndPoint server)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp)
        {
            NoDelay = true,
            ReceiveBufferSize = plan.ClientReceiveBuffer,
            SendBufferSize = plan.ClientSendBuffer,
        };
        try
        {
            await socket.ConnectAsync(server).ConfigureAwait(false);
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        var end = new SocketEnd(round, socket, EndRole.Client);
        end.Attach(plan);
        round.Offer(((IPEndPoint)socket.LocalEndPoint!).Port, plan);
        return end;
    }

    /// <summary>An accepted socket: it learns its plan from the client's port, then attaches to the round.</summary>
    public static async Task AcceptedAsync(StressRound round, Socket socket)
    {
        var end = new SocketEnd(round, socket, EndRole.Server);
        var plan = await round.ClaimAsync(((IPEndPoint)socket.RemoteEndPoint!).Port).ConfigureAwait(false);
        socket.NoDelay = true;
        socket.ReceiveBufferSize = plan.ServerReceiveBuffer;
        socket.SendBufferSize = plan.ServerSendBuffer;
        end.Attach(plan);
        round.ServerEndAttached(end);
    }

    public void Start() => started.TrySetResult();

    public void Abort()
    {
        if (Interlocked.Exchange(ref closed, 1) == 0)
        {
            socket.LingerState = new LingerOption(true, 0);
            socket.Dispose();
        }
    }

    private void Attach(ConnectionPlan connection)
    {
        plan = connection;
        inbound = new InboundCheck(round, connection, Role);
        outbound = new OutboundStream(round, connection, Role);
        var reading = Task.Run(ReadAsync);
        var writing = Task.Run(WriteAsync);
        _ = Task.WhenAll(reading, writing).ContinueWith(
            _ =>
            {
                CloseOnce();
                ended.TrySetResult(new EndReport(Role, outcome, inbound.Received, outbound.Written, writesCompleted, finAfterEveryWrite, error));
            },
            TaskScheduler.Default);
    }

    private async Task ReadAsync()
    {
        var random = StressSettings.RandomFor(round.Seed, plan!.Id, (long)Role, 0x4ead);
        var buffer = new byte[MaxReadBytes];
        while (true)
        {
            int read;
            try
            {
                read = await socket.ReceiveAsync(buffer.AsMemory(0, random.Next(1, MaxReadBytes + 1)), SocketFlags.None).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
            {
                Ending(Volatile.Read(ref closed) != 0 ? EndOutcome.LocalClose : EndOutcome.PeerReset, ex);
                break;
            }

            if (read == 0)
            {
                Ending(Volatile.Read(ref closed) != 0 ? EndOutcome.LocalClose : EndOutcome.PeerEof, null);
                break;
            }

            if (!inbound!.Accept(buffer.AsSpan(0, read)))
            {
                Ending(EndOutcome.Corrupted, null);
                Abort();
                break;
            }

            if (inbound.Complete)
            {
                PartFinished();
            }

            if (random.Next(StressRound.PauseOneIn) == 0)
            {
                round.Paused();

                // The pause itself is the behaviour under test: a reader that stops, so the writer's socket fills.
                await Task.Delay(random.Next(1, StressRound.MaxPauseMs + 1)).ConfigureAwait(false);
            }
        }

        // The peer ended the connection (or this end did): nothing more to write either.
        CloseOnce();
    }

    private async Task WriteAsync()
    {
        await started.Task.ConfigureAwait(false);
        var stream = outbound!;
        var buffer = new byte[StressRound.MaxMessageBytes];
        try
        {
            while (!stream.Finished && !stream.AtCut && Volatile.Read(ref closed) == 0)
            {
                var size = stream.NextSize();
                stream.Fill(buffer.AsSpan(0, size));
                await socket.SendAsync(buffer.AsMemory(0, size), SocketFlags.None).ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            // The peer reset or this end closed: the reader reports how the connection ended.
            return;
        }

        if (stream.AtCut)
        {
            if (plan!.Cut!.Kind == CutKind.Reset)
            {
                Ending(EndOutcome.LocalClose, null);
                Abort();
            }
            else
            {
                writesCompleted = true;
                try
                {
                    socket.Shutdown(SocketShutdown.Send); // FIN after every byte sent; the reader goes on until the peer closes
                    finAfterEveryWrite = true;
                }
                catch (SocketException)
                {
                    // the peer reset first: the reader reports it
                }
            }

            return;
        }

        if (stream.Finished)
        {
            writesCompleted = true;
            PartFinished();
        }
    }

    /// <summary>
    /// A client closes once it has read everything and sent everything: a FIN, as nothing it was sent is unread. A
    /// server waits for that FIN (its reader sees EOF) and closes then.
    /// </summary>
    private void PartFinished()
    {
        if (Interlocked.Increment(ref finishedParts) == 2 && Role == EndRole.Client && plan!.Cut is null)
        {
            Ending(EndOutcome.LocalClose, null);
            CloseOnce();
        }
    }

    private void Ending(EndOutcome how, Exception? cause)
    {
        lock (socket)
        {
            if (outcome == EndOutcome.Open)
            {
                outcome = how;
                error = cause is null ? null : StressRound.DescribeError(cause);
            }
        }
    }

    /// <summary>
    /// A graceful close. .NET on Linux disposes a TCP socket that still has a receive pending by disconnecting it,
    /// which is an RST, unless the socket was shut down for sending first; so shut down, then dispose.
    /// </summary>
    private void CloseOnce()
    {
        if (Interlocked.Exchange(ref closed, 1) == 0)
        {
            try
            {
                socket.Shutdown(SocketShutdown.Send);
            }
            catch (SocketException)
            {
                // already reset by the peer: nothing left to say
            }

            socket.Dispose();
        }
    }
}
