using DotNetty.Transport.Channels;

namespace TcpConnections;

/// <summary>
/// Mechanism only, in the shape of Netty's <c>IdleDetector</c>: notices that nothing was read (or written) for a
/// period and raises an <see cref="IdleEvent"/> through the pipeline. It decides nothing; a policy above it
/// (<see cref="HeartbeatHandler"/>, or an application's own) acts on the events. Each check is scheduled on the
/// channel's event loop for the exact time left until the direction could be idle, so an event comes on time and a
/// busy connection costs one check per period. A period of zero turns that direction off.
/// </summary>
/// <remarks>
/// Reads are counted when a message passes this handler, so put it after the frame decoder: a peer that trickles a
/// frame one byte at a time is idle until a whole frame arrives. Writes are counted when they complete.
/// </remarks>
public sealed class IdleDetector : ChannelDuplexHandler
{
    /// <summary>A check is never due sooner: below a millisecond a test clock would fire it at once, over and over.</summary>
    private static readonly TimeSpan MinimumDelay = TimeSpan.FromMilliseconds(1);

    private readonly TimeSpan readerIdle;
    private readonly TimeSpan writerIdle;
    private readonly TimeProvider time;
    private IChannelHandlerContext? handlerContext;
    private LoopTimer? readerCheck;
    private LoopTimer? writerCheck;
    private long lastRead;
    private long lastWrite;
    private int readerCount;
    private int writerCount;
    private bool started;
    private bool stopped;

    public IdleDetector(TimeSpan readerIdle, TimeSpan writerIdle, TimeProvider? time = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(readerIdle, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThan(writerIdle, TimeSpan.Zero);
        this.readerIdle = readerIdle;
        this.writerIdle = writerIdle;
        this.time = time ?? TimeProvider.System;
    }

    public override void HandlerAdded(IChannelHandlerContext context)
    {
        handlerContext = context;
        if (context.Channel.Active && context.Channel.Registered)
        {
            Start(context);
        }
    }

    public override void ChannelActive(IChannelHandlerContext context)
    {
        Start(context);
        context.FireChannelActive();
    }

    public override void ChannelInactive(IChannelHandlerContext context)
    {
        Stop();
        context.FireChannelInactive();
    }

    public override void HandlerRemoved(IChannelHandlerContext context) => Stop();

    public override void ChannelRead(IChannelHandlerContext context, object message)
    {
        lastRead = time.GetTimestamp();
        readerCount = 0;
        context.FireChannelRead(message);
    }

    public override Task WriteAsync(IChannelHandlerContext context, object message)
    {
        var task = context.WriteAsync(message);
        if (writerIdle > TimeSpan.Zero)
        {
            task.ContinueWith(
                static (_, s) => ((IdleDetector)s!).OnWritten(),
                this,
                CancellationToken.None,
                TaskContinuationOptions.OnlyOnRanToCompletion | TaskContinuationOptions.ExecuteSynchronously,
                TaskScheduler.Default);
        }

        return task;
    }

    private void OnWritten()
    {
        lastWrite = time.GetTimestamp();
        writerCount = 0;
    }

    private void Start(IChannelHandlerContext context)
    {
        if (started)
        {
            return;
        }

        started = true;
        lastRead = lastWrite = time.GetTimestamp();
        if (readerIdle > TimeSpan.Zero)
        {
            readerCheck = Schedule(context, readerIdle, static s => ((IdleDetector)s!).CheckReader());
        }

        if (writerIdle > TimeSpan.Zero)
        {
            writerCheck = Schedule(context, writerIdle, static s => ((IdleDetector)s!).CheckWriter());
        }
    }

    private void Stop()
    {
        stopped = true;
        readerCheck?.Cancel();
        writerCheck?.Cancel();
    }

    private LoopTimer Schedule(IChannelHandlerContext context, TimeSpan delay, Action<object?> check) =>
        LoopTimer.Schedule(context.Executor, time, delay, check, this);

    private void CheckReader()
    {
        if (Due(readerIdle, lastRead, ref readerCount, static s => ((IdleDetector)s!).CheckReader(), out readerCheck) is { } quiet)
        {
            handlerContext!.FireUserEventTriggered(new IdleEvent(IdleDirection.Reader, readerCount, quiet));
        }
    }

    private void CheckWriter()
    {
        if (Due(writerIdle, lastWrite, ref writerCount, static s => ((IdleDetector)s!).CheckWriter(), out writerCheck) is { } quiet)
        {
            handlerContext!.FireUserEventTriggered(new IdleEvent(IdleDirection.Writer, writerCount, quiet));
        }
    }

    /// <summary>
    /// How long the direction has been quiet when another idle period of its spell is complete, else null; schedules
    /// the next check either way, for the exact time left until the next period completes (periods of a spell fall
    /// due <paramref name="idle"/> apart, counted from the last traffic).
    /// </summary>
    private TimeSpan? Due(TimeSpan idle, long last, ref int count, Action<object?> check, out LoopTimer? next)
    {
        next = null;
        var context = handlerContext;
        if (stopped || context is null || !context.Channel.Active)
        {
            return null;
        }

        var quiet = time.GetElapsedTime(last);
        var complete = quiet >= idle * (count + 1);
        if (complete)
        {
            // A check that ran late (a stalled loop) counts every period that passed, and still fires once.
            count = Math.Max(count + 1, (int)(quiet / idle));
        }

        var left = (idle * (count + 1)) - quiet;
        next = Schedule(context, left > MinimumDelay ? left : MinimumDelay, check);
        return complete ? quiet : null;
    }
}
