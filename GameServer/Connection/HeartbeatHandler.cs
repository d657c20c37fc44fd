using DotNetty.Common.Utilities;
using DotNetty.Transport.Channels;

namespace GameServer.Connection;

/// <summary>
/// Policy over <see cref="IdleStateTimer"/>: sends a Ping every interval and measures the round trip from its Pong;
/// when the timer reports <see cref="HeartbeatOptions.Misses"/> quiet intervals in a row (no inbound frame of any
/// kind), the peer is taken for dead and the connection is aborted as <see cref="CloseReason.HeartbeatTimeout"/>:
/// there is nobody to drain to. Pongs that answer its own Pings are consumed here; anything else passes on.
/// </summary>
public sealed class HeartbeatHandler : ChannelDuplexHandler
{
    private readonly HeartbeatOptions options;
    private readonly IHeartbeatProtocol protocol;
    private readonly TimeProvider time;
    private readonly ConnectionMetrics metrics;
    private readonly Queue<(long Seq, long SentAt)> outstanding = new();
    private IChannelHandlerContext? handlerContext;
    private System.Threading.ITimer? timer;
    private long seq;

    public HeartbeatHandler(HeartbeatOptions options, IHeartbeatProtocol protocol, TimeProvider time, ConnectionMetrics metrics)
    {
        this.options = options;
        this.protocol = protocol;
        this.time = time;
        this.metrics = metrics;
    }

    public override void HandlerAdded(IChannelHandlerContext context)
    {
        handlerContext = context;
        if (context.Channel.Active)
        {
            Start();
        }
    }

    public override void HandlerRemoved(IChannelHandlerContext context) => Stop();

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

    public override void ChannelRead(IChannelHandlerContext context, object message)
    {
        if (protocol.TryReadPong(message, out var pongSeq) && TryMatch(pongSeq, out var sentAt))
        {
            metrics.RoundTrip(time.GetElapsedTime(sentAt));
            ReferenceCountUtil.Release(message);
            return;
        }

        context.FireChannelRead(message);
    }

    public override void UserEventTriggered(IChannelHandlerContext context, object evt)
    {
        if (evt is IdleStateEvent { State: IdleState.ReaderIdle } idle && idle.Count >= options.Misses)
        {
            _ = ConnectionCloser.AbortAsync(
                context.Channel,
                CloseReason.HeartbeatTimeout,
                0,
                $"no frame for {idle.Quiet.TotalMilliseconds:0} ms ({idle.Count} heartbeat intervals of {options.IntervalMs} ms)");
            return;
        }

        context.FireUserEventTriggered(evt);
    }

    private void Start()
    {
        timer ??= time.CreateTimer(static s => ((HeartbeatHandler)s!).OnTick(), this, options.Interval, options.Interval);
    }

    private void Stop()
    {
        timer?.Dispose();
        timer = null;
    }

    private void OnTick()
    {
        if (handlerContext is { } context)
        {
            ConnectionCloser.TryExecute(context.Executor, static s => ((HeartbeatHandler)s!).SendPing(), this);
        }
    }

    private void SendPing()
    {
        var context = handlerContext;
        if (context is null || timer is null || !context.Channel.Active
            || ConnectionState.Of(context.Channel).Phase != ConnectionPhase.Open)
        {
            return;
        }

        // Remember only as many Pings as can be answered before the peer counts as dead.
        while (outstanding.Count > options.Misses)
        {
            outstanding.Dequeue();
        }

        var next = ++seq;
        outstanding.Enqueue((next, time.GetTimestamp()));
        _ = context.WriteAndFlushAsync(protocol.CreatePing(next, time.GetUtcNow().ToUnixTimeMilliseconds()));
    }

    private bool TryMatch(long pongSeq, out long sentAt)
    {
        // Pongs come back in order: a match also settles every older Ping, a stray Pong changes nothing.
        if (outstanding.All(p => p.Seq != pongSeq))
        {
            sentAt = 0;
            return false;
        }

        while (true)
        {
            var (pingSeq, at) = outstanding.Dequeue();
            if (pingSeq == pongSeq)
            {
                sentAt = at;
                return true;
            }
        }
    }
}
