using DotNetty.Transport.Channels;

namespace GameServer.Connection;

/// <summary>
/// Ends a peer that does not read. The transport's write-buffer water marks make a channel unwritable when its
/// outbound queue passes the high mark; producers are expected to stop or coalesce then (rooms skip to the next
/// tick, streams pause). A peer that stays unwritable for the whole timeout is aborted as
/// <see cref="CloseReason.SlowConsumer"/>: draining to a peer that does not read would never finish.
/// </summary>
public sealed class SlowConsumerHandler : ChannelHandlerAdapter
{
    private readonly TimeSpan timeout;
    private readonly TimeProvider time;
    private System.Threading.ITimer? timer;
    private int generation;

    public SlowConsumerHandler(TimeSpan timeout, TimeProvider time)
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(timeout, TimeSpan.Zero);
        this.timeout = timeout;
        this.time = time;
    }

    public override void ChannelWritabilityChanged(IChannelHandlerContext context)
    {
        if (context.Channel.IsWritable)
        {
            Cancel();
        }
        else
        {
            // A disposed timer can still deliver a callback already under way: the generation tells it apart.
            timer ??= time.CreateTimer(
                static s =>
                {
                    var (handler, ctx, armed) = ((SlowConsumerHandler, IChannelHandlerContext, int))s!;
                    ConnectionCloser.TryExecute(ctx.Executor, _ => handler.OnTimeout(ctx, armed), null);
                },
                (this, context, generation),
                timeout,
                Timeout.InfiniteTimeSpan);
        }

        context.FireChannelWritabilityChanged();
    }

    public override void ChannelInactive(IChannelHandlerContext context)
    {
        Cancel();
        context.FireChannelInactive();
    }

    private void OnTimeout(IChannelHandlerContext context, int armed)
    {
        if (armed != generation)
        {
            return; // a timer cancelled after it had fired
        }

        Cancel();
        if (!context.Channel.IsWritable && context.Channel.Active)
        {
            _ = ConnectionCloser.AbortAsync(
                context.Channel, CloseReason.SlowConsumer, 0, $"not reading: over the write high-water mark for {timeout.TotalMilliseconds:0} ms");
        }
    }

    private void Cancel()
    {
        generation++;
        timer?.Dispose();
        timer = null;
    }
}
