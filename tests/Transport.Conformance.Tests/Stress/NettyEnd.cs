using System.Net;
using DotNetty.Buffers;
using DotNetty.Transport.Channels;

namespace Transport.Conformance.Tests.Stress;

/// <summary>
/// One end of a stressed connection on a DotNetty channel (either transport). Reading: every received byte is
/// checked against the peer's stream as it arrives, and reading pauses at random (AutoRead off, then on again from
/// a scheduled task). Writing: the stream is produced in bursts that alternate between the event loop (writes from
/// the handler) and the thread pool (<c>WriteAsync</c> from outside the loop); a burst hands over only at its end,
/// through the loop's task queue, so the bytes keep their order. Both producers stop while the channel is over its
/// high-water mark and go on when it is writable again, so a writer meets a full socket whenever its reader pauses.
/// </summary>
public sealed class NettyEnd : ChannelHandlerAdapter, IStressEnd
{
    private readonly StressRound round;
    private readonly TaskCompletionSource<EndReport> ended = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private IChannelHandlerContext? context;
    private volatile ConnectionPlan? plan;
    private InboundCheck? inbound;
    private OutboundStream? outbound;
    private Random? readRandom;
    private TaskCompletionSource writable = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Task lastWrite = Task.CompletedTask;
    private int burstLeft;
    private bool waitingOnLoop;
    private bool writerDone;
    private volatile bool writesCompleted;
    private bool paused;
    private bool closing;
    private bool everUnwritable;
    private volatile bool inactive;
    private Exception? error;
    private string? stateAtAbort;

    private NettyEnd(StressRound round, EndRole role, ConnectionPlan? plan)
    {
        this.round = round;
        Role = role;
        this.plan = plan;
    }

    public EndRole Role { get; }

    public ConnectionPlan? Plan => plan;

    public Task<EndReport> Ended => ended.Task;

    /// <summary>The end of a connection this test opens: its plan is known before it connects.</summary>
    public static NettyEnd ForClient(StressRound round, ConnectionPlan plan) => new(round, EndRole.Client, plan);

    /// <summary>The end of an accepted connection: it learns its plan from the client's port once the client offers it.</summary>
    public static NettyEnd ForServer(StressRound round) => new(round, EndRole.Server, null);

    /// <summary>Socket buffers from the plan, set before the connection exists where the transport allows (clients).</summary>
    public static void ApplyBuffers(IChannel channel, ConnectionPlan plan, EndRole role)
    {
        channel.Configuration.SetOption(ChannelOption.SoRcvbuf, plan.ReceiveBufferOf(role));
        channel.Configuration.SetOption(ChannelOption.SoSndbuf, plan.SendBufferOf(role));
    }

    public override void HandlerAdded(IChannelHandlerContext context) => this.context = context;

    public override void ChannelActive(IChannelHandlerContext context)
    {
        if (Role == EndRole.Client)
        {
            Attach(plan!);
        }
        else
        {
            // Reading waits for the plan (AutoRead starts off): until then this end would not know which stream to expect.
            var port = ((IPEndPoint)context.Channel.RemoteAddress).Port;
            _ = round.ClaimAsync(port).ContinueWith(
                t => context.Executor.Execute(() =>
                {
                    plan = t.Result;
                    ApplyBuffers(context.Channel, t.Result, Role);
                    Attach(t.Result);
                    context.Channel.Configuration.AutoRead = true;
                    round.ServerEndAttached(this);
                }),
                CancellationToken.None,
                TaskContinuationOptions.OnlyOnRanToCompletion,
                TaskScheduler.Default);
        }

        context.FireChannelActive();
    }

    public void Start() => context!.Executor.Execute(() =>
    {
        burstLeft = outbound!.NextBurst();
        PumpOnLoop();
    });

    public void Abort()
    {
        var channel = context?.Channel;
        if (channel is null)
        {
            return;
        }

        if (!inactive)
        {
            // Read from outside the loop, for the failure message only: a view of the writer just before the reset.
            stateAtAbort = $"state at abort: writable {channel.IsWritable}, pump waiting {waitingOnLoop}, writer done {writerDone}, " +
                $"wrote {outbound?.Written} B, last write {lastWrite.Status}, reading paused {paused}, AutoRead {channel.Configuration.AutoRead}";
        }

        channel.EventLoop.Execute(() =>
        {
            if (!inactive)
            {
                closing = true;
                channel.Configuration.SetOption(ChannelOption.SoLinger, 0);
                _ = channel.CloseAsync();
            }
        });
    }

    public override void ChannelRead(IChannelHandlerContext context, object message)
    {
        var buffer = (IByteBuffer)message;
        try
        {
            var bytes = buffer.GetIoBuffer(buffer.ReaderIndex, buffer.ReadableBytes);
            if (inbound is null || !inbound.Accept(bytes))
            {
                if (inbound is null)
                {
                    round.Fail($"{Role} end got {bytes.Count} B before it knew its connection");
                }

                AbortOnLoop();
                return;
            }
        }
        finally
        {
            buffer.Release();
        }

        if (inbound.Complete)
        {
            FinishIfDone();
        }

        if (!paused && readRandom!.Next(StressRound.PauseOneIn) == 0)
        {
            paused = true;
            round.Paused();
            context.Channel.Configuration.AutoRead = false;
            context.Executor.Schedule(
                () =>
                {
                    paused = false;
                    if (!inactive)
                    {
                        context.Channel.Configuration.AutoRead = true;
                    }
                },
                TimeSpan.FromMilliseconds(readRandom.Next(1, StressRound.MaxPauseMs + 1)));
        }
    }

    public override void ChannelWritabilityChanged(IChannelHandlerContext context)
    {
        if (!context.Channel.IsWritable)
        {
            round.BecameUnwritable(!everUnwritable);
            everUnwritable = true;
        }
        else
        {
            Interlocked.Exchange(ref writable, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
            if (waitingOnLoop)
            {
                waitingOnLoop = false;
                if (StressSettings.ResumeInline)
                {
                    PumpOnLoop();
                }
                else
                {
                    // Not from inside this event: the stock transport raises it from within its own bookkeeping of
                    // a completed send (FinishWrite → RemoveBytes, outside Flush0's re-entrancy guard), and a flush
                    // from there sends bytes twice and drops others (STRESS_RESUME_INLINE=1 shows it).
                    context.Executor.Execute(PumpOnLoop);
                }
            }
        }

        context.FireChannelWritabilityChanged();
    }

    public override void ExceptionCaught(IChannelHandlerContext context, Exception exception)
    {
        // The transport closes the channel after a read error; this end only keeps the first cause for its report.
        error ??= exception;
        _ = context.CloseAsync();
    }

    public override void ChannelInactive(IChannelHandlerContext context)
    {
        inactive = true;
        writable.TrySetResult();
        var outcome = inbound?.Failed == true ? EndOutcome.Corrupted
            : closing ? EndOutcome.LocalClose
            : error is not null ? EndOutcome.PeerReset
            : EndOutcome.PeerEof;
        ended.TrySetResult(new EndReport(
            Role,
            outcome,
            inbound?.Received ?? 0,
            outbound?.Written ?? 0,
            writesCompleted,
            FinAfterEveryWrite: false,
            error is null ? stateAtAbort : $"{StressRound.DescribeError(error)}; {stateAtAbort}"));
        context.FireChannelInactive();
    }

    private void Attach(ConnectionPlan connection)
    {
        inbound = new InboundCheck(round, connection, Role);
        outbound = new OutboundStream(round, connection, Role);
        readRandom = StressSettings.RandomFor(round.Seed, connection.Id, (long)Role, 0x4ead);
    }

    /// <summary>The loop's producer: writes until its burst ends, the channel is full, or the stream ends or is cut.</summary>
    private void PumpOnLoop()
    {
        var ctx = context!;
        var stream = outbound!;
        while (!inactive && !writerDone)
        {
            if (stream.AtCut)
            {
                Cut();
                return;
            }

            if (stream.Finished)
            {
                FinishWriting();
                return;
            }

            if (burstLeft == 0)
            {
                ctx.Flush();
                burstLeft = stream.NextBurst();
                _ = Task.Run(PumpOnPoolAsync);
                return;
            }

            if (!ctx.Channel.IsWritable)
            {
                // The flush may drain the buffer at once and raise the writable event inside it, before this pump
                // could say it waits: look again after it, and wait only if it is still full.
                ctx.Flush();
                if (ctx.Channel.IsWritable)
                {
                    continue;
                }

                waitingOnLoop = true; // ChannelWritabilityChanged goes on
                return;
            }

            burstLeft--;
            var message = NextMessage(ctx.Allocator, stream);
            lastWrite = stream.FlushNow() ? ctx.WriteAndFlushAsync(message) : ctx.WriteAsync(message);
        }
    }

    /// <summary>The thread pool's producer: the same stream, written from outside the loop.</summary>
    private async Task PumpOnPoolAsync()
    {
        var channel = context!.Channel;
        var stream = outbound!;
        while (!inactive)
        {
            if (burstLeft == 0 || stream.AtCut || stream.Finished)
            {
                // Handing back through the loop's queue: it runs after every write this thread queued.
                burstLeft = stream.NextBurst();
                channel.EventLoop.Execute(PumpOnLoop);
                return;
            }

            var signal = Volatile.Read(ref writable).Task;
            if (!channel.IsWritable)
            {
                channel.Flush(); // what waits unflushed would otherwise keep it unwritable for ever
                await signal.ConfigureAwait(false);
                continue;
            }

            burstLeft--;
            var message = NextMessage(channel.Allocator, stream);
            lastWrite = stream.FlushNow() ? channel.WriteAndFlushAsync(message) : channel.WriteAsync(message);
        }
    }

    private static IByteBuffer NextMessage(IByteBufferAllocator allocator, OutboundStream stream)
    {
        var size = stream.NextSize();
        var buffer = allocator.Buffer(size);
        var target = buffer.GetIoBuffer(buffer.WriterIndex, size);
        stream.Fill(target.AsSpan());
        buffer.SetWriterIndex(buffer.WriterIndex + size);
        return buffer;
    }

    private void Cut()
    {
        var ctx = context!;
        writerDone = true;
        ctx.Flush();
        if (plan!.Cut!.Kind == CutKind.Reset)
        {
            closing = true;
            ctx.Channel.Configuration.SetOption(ChannelOption.SoLinger, 0);
            _ = ctx.Channel.CloseAsync();
            return;
        }

        // A FIN promises the peer every byte written: close only once the last write (and so every earlier one) is in the kernel.
        _ = lastWrite.ContinueWith(
            t =>
            {
                writesCompleted = t.IsCompletedSuccessfully;
                ctx.Executor.Execute(() =>
                {
                    closing = true;
                    _ = ctx.Channel.CloseAsync();
                });
            },
            TaskScheduler.Default);
    }

    private void FinishWriting()
    {
        var ctx = context!;
        writerDone = true;
        ctx.Flush();
        _ = lastWrite.ContinueWith(
            t =>
            {
                writesCompleted = t.IsCompletedSuccessfully;
                ctx.Executor.Execute(FinishIfDone);
            },
            TaskScheduler.Default);
    }

    /// <summary>A client closes once it has everything and all it wrote is in the kernel; a server waits for the client's FIN.</summary>
    private void FinishIfDone()
    {
        if (Role == EndRole.Client && plan!.Cut is null && writesCompleted && inbound!.Complete && !inactive && !closing)
        {
            closing = true;
            _ = context!.Channel.CloseAsync();
        }
    }

    private void AbortOnLoop()
    {
        if (!inactive && !closing)
        {
            closing = true;
            context!.Channel.Configuration.SetOption(ChannelOption.SoLinger, 0);
            _ = context.Channel.CloseAsync();
        }
    }
}
