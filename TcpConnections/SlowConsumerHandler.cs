using DotNetty.Transport.Channels;

namespace TcpConnections;

/// <summary>
/// Ends a peer that does not read. The transport's write-buffer water marks make a channel unwritable when its
/// outbound queue passes the high mark; producers are expected to stop or coalesce then (a game skips to the next
/// tick, a stream pauses). A peer that stays unwritable for the whole timeout is aborted as
/// <see cref="CloseReason.SlowConsumer"/>: draining to a peer that does not read would never finish. The timeout is
/// scheduled on the channel's event loop.
/// </summary>
public sealed class SlowConsumerHandler : ChannelHandlerAdapter
{
    private readonly TimeSpan timeout;
    private readonly TimeProvider time;
    private LoopTimer? timer;
    private int generation;

    public SlowConsumerHandler(TimeSpan timeout, TimeProvider? time = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(timeout, TimeSpan.Zero);
        this.timeout = timeout;
        this.time = time ?? TimeProvider.System;
    }

    public override void ChannelWritabilityChanged(IChannelHandlerContext context)
    {
        if (context.Channel.IsWritable)
        {
            Cancel();
        }
        else
        {
            timer ??= LoopTimer.Schedule(
                context.Executor,
                time,
                timeout,
                static s =>
                {
                    var (handler, ctx, armed) = ((SlowConsumerHandler, IChannelHandlerContext, int))s!;
                    handler.OnTimeout(ctx, armed);
                },
                (this, context, generation));
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
            return; // cancelled after it had fired: a test clock's timer hands its action to the loop first
        }

        Cancel();
        if (!context.Channel.IsWritable && context.Channel.Active)
        {
            _ = TcpConnection.Of(context.Channel).AbortAsync(
                CloseReason.SlowConsumer, $"not reading: over the write high-water mark for {timeout.TotalMilliseconds:0} ms");
        }
    }

    private void Cancel()
    {
        generation++;
        timer?.Cancel();
        timer = null;
    }
}
