using DotNetty.Common.Utilities;
using DotNetty.Transport.Channels;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace TcpConnections;

/// <summary>Reads the kernel's view of a channel's connection (<see cref="SocketAccess.TryGetTcpInfo(IChannel, out TcpInfo)"/>); false when unknown.</summary>
public delegate bool TcpInfoReader(IChannel channel, out TcpInfo info);

/// <summary>
/// Policy over <see cref="IdleDetector"/>'s reader-idle events: sends a Ping every interval (scheduled on the
/// channel's event loop) and measures the round trip from its Pong; when the idle handler reports
/// <see cref="HeartbeatOptions.Misses"/> quiet intervals in a row (no inbound frame of any kind), the peer is taken for
/// dead and the connection is aborted as <see cref="CloseReason.HeartbeatTimeout"/>: there is nobody to drain to.
/// Pongs that answer its own Pings are consumed here; anything else passes on. Put the idle handler, with the
/// heartbeat interval as its reader idle time, below it.
/// </summary>
/// <remarks>
/// <para>
/// A live reader that is slower than our output cannot answer in time: our Pings wait behind the data it has not read
/// yet. So when the misses are reached while our output is backed up (bytes wait in the channel or in the kernel's
/// send buffer) and the peer's kernel is still answering, the peer is alive but slow and the heartbeat defers to the
/// slow-consumer policy (<c>slow_consumer</c>), checking again every interval. The peer's kernel counts as answering
/// when it sent an ACK within the heartbeat's quiet bound (Misses × interval), or when at most one zero-window probe
/// and no retransmission is outstanding: a live kernel whose window is shut answers probes, but only on the kernel's
/// doubling probe schedule and at most one per 500 ms (<c>net.ipv4.tcp_invalid_ratelimit</c>), so its last ACK can be
/// most of a stall old (measured: 0.7 s into a 1 s stall, 3.6 s into an 8 s one) while one probe waits unanswered
/// (KernelUserTimeoutTests). A pulled cable answers nothing: its unanswered probes or retransmissions count up at once.
/// </para>
/// <para>
/// The deferral never lasts longer than the slow-consumer timeout beyond the normal bound, so a hung peer whose window
/// is shut while too little is written to make the channel unwritable still ends, as <c>heartbeat_timeout</c>. With no
/// slow-consumer timeout (the client), or where the kernel's view is unknown (not Linux, another transport), the
/// heartbeat never defers.
/// </para>
/// </remarks>
public sealed class HeartbeatHandler : ChannelDuplexHandler
{
    /// <summary>
    /// Zero-window probes a live peer's kernel can leave unanswered in a row. It answers at most one per 500 ms
    /// (<c>net.ipv4.tcp_invalid_ratelimit</c>); the probes after an answered one come at least 400 ms and then 1200 ms
    /// after it (the interval doubles from an RTO of 200 ms or more), so the first may go unanswered, the second never.
    /// </summary>
    private const int ProbesALiveKernelLeavesUnanswered = 1;

    private readonly HeartbeatOptions options;
    private readonly IHeartbeatProtocol protocol;
    private readonly TimeProvider time;
    private readonly IConnectionMetrics metrics;
    private readonly TimeSpan slowConsumerTimeout;
    private readonly TcpInfoReader readTcpInfo;
    private readonly ILogger logger;
    private readonly Queue<(long Seq, long SentAt)> outstanding = new();
    private IChannelHandlerContext? handlerContext;
    private LoopTimer? timer;
    private bool running;
    private long seq;
    private long answered;

    /// <param name="slowConsumerTimeout">
    /// How long beyond the normal bound the heartbeat may defer to the slow-consumer policy for a peer that is alive but
    /// behind on our output (<c>Server:SlowConsumerTimeoutMs</c>); zero never defers.
    /// </param>
    /// <param name="readTcpInfo">The kernel's view of the connection; <see cref="SocketAccess.TryGetTcpInfo(IChannel, out TcpInfo)"/> unless a test fakes it.</param>
    public HeartbeatHandler(
        HeartbeatOptions options,
        IHeartbeatProtocol protocol,
        TimeProvider? time = null,
        IConnectionMetrics? metrics = null,
        TimeSpan slowConsumerTimeout = default,
        TcpInfoReader? readTcpInfo = null,
        ILogger? logger = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(slowConsumerTimeout, TimeSpan.Zero);
        ArgumentNullException.ThrowIfNull(protocol);
        this.options = options.ThrowIfInvalid();
        this.protocol = protocol;
        this.time = time ?? TimeProvider.System;
        this.metrics = metrics ?? ConnectionMetrics.None;
        this.slowConsumerTimeout = slowConsumerTimeout;
        this.readTcpInfo = readTcpInfo ?? SocketAccess.TryGetTcpInfo;
        this.logger = logger ?? NullLogger.Instance;
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
            if (sentAt is { } at)
            {
                metrics.RoundTrip(time.GetElapsedTime(at));
            }

            ReferenceCountUtil.Release(message);
            return;
        }

        context.FireChannelRead(message);
    }

    public override void UserEventTriggered(IChannelHandlerContext context, object evt)
    {
        if (evt is IdleEvent { Direction: IdleDirection.Reader } idle && idle.Count >= options.Misses)
        {
            OnMissesReached(context.Channel, idle);
            return;
        }

        context.FireUserEventTriggered(evt);
    }

    /// <summary>The quiet time after which a peer is dead unless it is shown to be alive: Misses × interval.</summary>
    private TimeSpan QuietBound => options.Interval * options.Misses;

    private void OnMissesReached(IChannel channel, IdleEvent idle)
    {
        var detail = $"no frame for {idle.Quiet.TotalMilliseconds:0} ms ({idle.Count} heartbeat intervals of {options.IntervalMs} ms)";
        if (slowConsumerTimeout > TimeSpan.Zero && readTcpInfo(channel, out var info))
        {
            var pending = channel.Unsafe.OutboundBuffer?.TotalPendingWriteBytes() ?? 0;
            var backedUp = pending > 0 || info.NotSentBytes > 0;
            var answering = info.SinceLastAck < QuietBound
                || (info.Probes <= ProbesALiveKernelLeavesUnanswered && info.Retransmits == 0);
            if (backedUp && answering)
            {
                if (idle.Quiet < QuietBound + slowConsumerTimeout)
                {
                    LogDeferred(logger, TcpConnection.Of(channel), idle.Quiet, pending, info);
                    return;
                }

                detail += $"; alive but reading nothing of our output for the slow-consumer timeout beyond that ({Describe(pending, info)})";
            }
            else if (backedUp)
            {
                detail += $"; the peer's kernel stopped answering ({Describe(pending, info)})";
            }
        }

        _ = TcpConnection.Of(channel).AbortAsync(CloseReason.HeartbeatTimeout, detail);
    }

    private static string Describe(long pending, TcpInfo info) =>
        $"{pending} bytes queued in the channel and {info.NotSentBytes} unsent in the kernel; the peer's last ACK "
        + $"{info.SinceLastAck.TotalMilliseconds:0} ms ago, {info.Probes} probes unanswered, {info.Retransmits} retransmissions";

    private void Start()
    {
        if (!running && handlerContext is { } context)
        {
            running = true;
            ScheduleTick(context);
        }
    }

    private void Stop()
    {
        running = false;
        timer?.Cancel();
        timer = null;
    }

    private void OnTick()
    {
        if (!running || handlerContext is not { } context)
        {
            return;
        }

        SendPing();
        ScheduleTick(context);
    }

    private void ScheduleTick(IChannelHandlerContext context) =>
        timer = LoopTimer.Schedule(context.Executor, time, options.Interval, static s => ((HeartbeatHandler)s!).OnTick(), this);

    private void SendPing()
    {
        var context = handlerContext;
        if (context is null || !context.Channel.Active || TcpConnection.Of(context.Channel).Phase != ConnectionPhase.Open)
        {
            return;
        }

        // Remember the send times of only as many Pings as can be answered before the peer counts as dead; an older
        // one's Pong still answers a Ping of ours (see TryMatch), it just gives no round trip.
        while (outstanding.Count > RememberedPings)
        {
            outstanding.Dequeue();
        }

        var next = ++seq;
        outstanding.Enqueue((next, time.GetTimestamp()));
        _ = context.WriteAndFlushAsync(protocol.CreatePing(next, time.GetUtcNow().ToUnixTimeMilliseconds()));
    }

    /// <summary>Pings sent while a peer may still count as alive: the misses, plus the intervals the heartbeat may defer.</summary>
    private int RememberedPings => options.Misses + (int)(slowConsumerTimeout / options.Interval);

    private bool TryMatch(long pongSeq, out long? sentAt)
    {
        // Pongs come back in order, and a slow reader's can come long after the Ping (it waited behind our output):
        // any Pong for a Ping we sent and that is not yet answered counts, and settles every older Ping. Anything else
        // answers nothing of ours and passes on.
        sentAt = null;
        if (pongSeq <= answered || pongSeq > seq)
        {
            return false;
        }

        answered = pongSeq;
        while (outstanding.TryPeek(out var ping) && ping.Seq <= pongSeq)
        {
            outstanding.Dequeue();
            if (ping.Seq == pongSeq)
            {
                sentAt = ping.SentAt;
            }
        }

        return true;
    }

    private static void LogDeferred(ILogger logger, TcpConnection connection, TimeSpan quiet, long pending, TcpInfo info)
    {
        if (logger.IsEnabled(LogLevel.Debug))
        {
            ConnectionLog.HeartbeatDeferred(logger, connection.Id, (long)quiet.TotalMilliseconds, pending, info.NotSentBytes, (long)info.SinceLastAck.TotalMilliseconds, info.Probes, info.Retransmits);
        }
    }
}
