using DotNetty.Transport.Channels;

namespace GameServer.Connection;

/// <summary>
/// Mechanism only, in the shape of Netty's <c>IdleStateHandler</c>: notices that nothing was read (or written) for a
/// period and raises an <see cref="IdleStateEvent"/> through the pipeline. It decides nothing; a handler above it
/// (for example <see cref="HeartbeatHandler"/>) owns the policy. Time comes from an injected
/// <see cref="TimeProvider"/>, so tests can advance a fake clock instead of waiting. A period of zero turns that
/// direction off.
/// </summary>
/// <remarks>
/// Reads are counted when a message passes this handler, so put it after the frame decoder: a peer that trickles
/// a frame one byte at a time is idle until a whole frame arrives. Writes are counted when they complete.
/// </remarks>
public sealed class IdleStateTimer : ChannelDuplexHandler
{
    private readonly TimeSpan readerIdle;
    private readonly TimeSpan writerIdle;
    private readonly TimeProvider time;
    private ITimer? timer;
    private IChannelHandlerContext? handlerContext;
    private long lastRead;
    private long lastWrite;
    private int readerCount;
    private int writerCount;

    public IdleStateTimer(TimeSpan readerIdle, TimeSpan writerIdle, TimeProvider time)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(readerIdle, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThan(writerIdle, TimeSpan.Zero);
        this.readerIdle = readerIdle;
        this.writerIdle = writerIdle;
        this.time = time;
    }

    public override void HandlerAdded(IChannelHandlerContext context)
    {
        handlerContext = context;
        if (context.Channel.Active && context.Channel.Registered)
        {
            Start();
        }
    }

    public override void ChannelActive(IChannelHandlerContext context)
    {
        Start();
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
                static (_, s) => ((IdleStateTimer)s!).OnWritten(),
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

    private void Start()
    {
        if (timer is not null)
        {
            return;
        }

        lastRead = lastWrite = time.GetTimestamp();
        var period = Smallest(readerIdle, writerIdle);
        if (period <= TimeSpan.Zero)
        {
            return;
        }

        // Check a few times per period so an event is late by at most a quarter of it.
        var tick = period / 4;
        timer = time.CreateTimer(static s => ((IdleStateTimer)s!).OnTick(), this, tick, tick);
    }

    private void Stop()
    {
        timer?.Dispose();
        timer = null;
    }

    private void OnTick()
    {
        var context = handlerContext;
        if (context is null)
        {
            return;
        }

        // Timer callbacks run on a pool thread; the pipeline is only touched on the event loop.
        ConnectionCloser.TryExecute(context.Executor, static s => ((IdleStateTimer)s!).Check(), this);
    }

    private void Check()
    {
        var context = handlerContext;
        if (context is null || timer is null || !context.Channel.Active)
        {
            return;
        }

        if (readerIdle > TimeSpan.Zero)
        {
            var quiet = time.GetElapsedTime(lastRead);
            if (quiet >= readerIdle * (readerCount + 1))
            {
                readerCount++;
                context.FireUserEventTriggered(new IdleStateEvent(IdleState.ReaderIdle, readerCount, quiet));
            }
        }

        if (writerIdle > TimeSpan.Zero)
        {
            var quiet = time.GetElapsedTime(lastWrite);
            if (quiet >= writerIdle * (writerCount + 1))
            {
                writerCount++;
                context.FireUserEventTriggered(new IdleStateEvent(IdleState.WriterIdle, writerCount, quiet));
            }
        }
    }

    private static TimeSpan Smallest(TimeSpan a, TimeSpan b) =>
        a <= TimeSpan.Zero ? b : b <= TimeSpan.Zero ? a : a < b ? a : b;
}
