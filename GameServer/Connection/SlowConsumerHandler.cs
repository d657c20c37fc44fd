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
            timer ??= time.CreateTimer(
                static s =>
                {
                    var ctx = (IChannelHandlerContext)s!;
                    ConnectionCloser.TryExecute(
                        ctx.Executor, static c => ((SlowConsumerHandler)((IChannelHandlerContext)c!).Handler).OnTimeout((IChannelHandlerContext)c!), ctx);
                },
                context,
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

    private void OnTimeout(IChannelHandlerContext context)
    {
        timer = null;
        if (!context.Channel.IsWritable && context.Channel.Active)
        {
            _ = ConnectionCloser.AbortAsync(
                context.Channel, CloseReason.SlowConsumer, 0, $"not reading: over the write high-water mark for {timeout.TotalMilliseconds:0} ms");
        }
    }

    private void Cancel()
    {
        timer?.Dispose();
        timer = null;
    }
}
