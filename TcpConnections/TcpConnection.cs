using System.Diagnostics;
using System.Net;
using DotNetty.Buffers;
using DotNetty.Common.Concurrency;
using DotNetty.Common.Utilities;
using DotNetty.Transport.Channels;

namespace TcpConnections;

/// <summary>Where a connection is in its life. Only moves forward.</summary>
public enum ConnectionPhase
{
    Open,

    /// <summary>A close is under way: a graceful one draining to the peer's FIN, or an abort finishing.</summary>
    Closing,

    Closed,
}

/// <summary>
/// The one owner of a connection's life, kept on the channel: its identity and counters, the first reason recorded
/// (the first wins), and the one close path, graceful (farewell, flush, FIN, drain to the peer's FIN or the drain
/// deadline) or abortive (RST). <see cref="ConnectionHandler"/> makes it when the channel joins a pipeline and raises
/// the close record when the channel goes inactive; handlers ask it (<see cref="Of"/>) and end the connection through
/// it, and nothing else writes its state. Its state changes on the channel's event loop only: the close methods may be
/// called from any thread and hop there.
/// </summary>
public sealed class TcpConnection
{
    private static readonly AttributeKey<TcpConnection> Key = AttributeKey<TcpConnection>.ValueOf("tcpconnections.connection");
    private static long nextId;

    private readonly TaskCompletionSource<ConnectionClosedEvent> closed =
        new(TaskCreationOptions.RunContinuationsAsynchronously);

    private readonly TimeSpan drainTimeout;
    private IScheduledTask? drainTimer;
    private bool peerFinished;
    private bool farewellFlushing;
    private string? remoteEndPoint;
    private long reportedFramesReceived;
    private long reportedBytesReceived;
    private long reportedFramesSent;
    private long reportedBytesSent;

    // How far into this object the fields a direct send reads reach (read off the JIT's code): the runtime lays out
    // the references first and the 8- and 4-byte fields after them, so the counters and the phase sit near its end,
    // up to 160 bytes in.
    private const int SendFieldsSpan = 160;

    private readonly IDirectWriteChannel? direct;

    private TcpConnection(IChannel channel, TimeSpan drainTimeout)
    {
        Channel = channel;
        direct = channel as IDirectWriteChannel;
        this.drainTimeout = drainTimeout;
        Id = $"c{Interlocked.Increment(ref nextId):x6}";
        OpenedAt = Stopwatch.GetTimestamp();
    }

    public IChannel Channel { get; }

    /// <summary>A short id unique in this process, used in every log scope.</summary>
    public string Id { get; }

    /// <summary>
    /// The peer's address as an operator reads it; "-" before the channel is connected. Behind a load balancer that
    /// sends the PROXY protocol (<see cref="ProxyProtocolDecoder"/>), the client's address from its header.
    /// </summary>
    public string RemoteEndPoint =>
        remoteEndPoint ?? (Channel.RemoteAddress is { } address ? remoteEndPoint = FormatEndPoint(address) : "-");

    /// <summary>The load balancer's address when a PROXY protocol header named the client; otherwise null.</summary>
    public string? ProxyEndPoint { get; private set; }

    /// <summary>When the channel became active (or joined its pipeline, if it never did), in Stopwatch ticks.</summary>
    public long OpenedAt { get; private set; }

    public TimeSpan Age => Stopwatch.GetElapsedTime(OpenedAt);

    public ConnectionPhase Phase { get; private set; }

    /// <summary>
    /// The channel's event loop as first asked for, kept here so that code grouping many connections by loop (a room's
    /// tick) reads this object only, not the channel's too. A channel stays on the loop it was registered on (nothing
    /// here deregisters a live channel to register it elsewhere; code that did would have to drop this cache).
    /// </summary>
    public IEventLoop EventLoop => eventLoop ??= Channel.EventLoop;

    private IEventLoop? eventLoop;

    /// <summary>Frames decoded from the peer, as the framing handler counted them (0 without one).</summary>
    public long FramesReceived { get; private set; }

    /// <summary>Frames encoded for the peer, as the framing handler counted them (0 without one).</summary>
    public long FramesSent { get; private set; }

    /// <summary>Bytes read from the socket.</summary>
    public long BytesReceived { get; private set; }

    /// <summary>Bytes handed to the transport to send.</summary>
    public long BytesSent { get; private set; }

    /// <summary>The first recorded reason; null while nothing has ended the connection.</summary>
    public CloseReason? Reason { get; private set; }

    /// <summary>The errno behind <see cref="Reason"/>, 0 when no socket error was involved.</summary>
    public int Errno { get; private set; }

    /// <summary>Free text for the close record (the protocol error, what the peer said).</summary>
    public string? Detail { get; private set; }

    /// <summary>What the peer's farewell said it received from us, when it said so.</summary>
    public long? PeerFramesReceived { get; private set; }

    /// <summary>Completes once, when the connection has closed and its record has been raised.</summary>
    public Task<ConnectionClosedEvent> Closed => closed.Task;

    /// <summary>The connection of a channel whose pipeline holds a <see cref="ConnectionHandler"/>.</summary>
    /// <exception cref="InvalidOperationException">There is none: the pipeline lacks its <see cref="ConnectionHandler"/>.</exception>
    public static TcpConnection Of(IChannel channel) =>
        Find(channel) ?? throw new InvalidOperationException(
            $"channel {channel.Id} has no TcpConnection: add a {nameof(ConnectionHandler)} first in its pipeline");

    /// <summary>The connection of a channel, or null when no <see cref="ConnectionHandler"/> made one.</summary>
    public static TcpConnection? Find(IChannel channel) => channel.GetAttribute(Key).Get();

    internal static TcpConnection Attach(IChannel channel, TimeSpan drainTimeout)
    {
        var attribute = channel.GetAttribute(Key);
        var connection = new TcpConnection(channel, drainTimeout);
        return attribute.CompareAndSet(null!, connection) ? connection : attribute.Get()!;
    }

    /// <summary>
    /// Records why the connection will end, without ending it: for a handshake this side starts and the peer
    /// finishes (a goodbye answered by the peer's close). The first reason wins; later calls return false. Call on the
    /// event loop.
    /// </summary>
    public bool TrySetReason(CloseReason reason, string? detail = null) => Record(reason, 0, detail);

    /// <summary>Counts frames the framing handler decoded. Call on the event loop.</summary>
    public void CountFramesReceived(int frames) => FramesReceived += frames;

    /// <summary>Counts a frame the framing handler encoded. Call on the event loop.</summary>
    public void CountFrameSent() => FramesSent++;

    /// <summary>
    /// How many steps <see cref="PrefetchForSend"/> takes to bring in what <see cref="TrySendFrameNow"/> reads: this
    /// connection, then its channel's chain. Zero when its transport cannot send directly.
    /// </summary>
    public int PrefetchSteps => direct is null ? 0 : 1 + direct.PrefetchSteps;

    /// <summary>
    /// Starts loading step <paramref name="step"/> of what <see cref="TrySendFrameNow"/> reads (0 = this connection);
    /// for a loop sending to many connections, which calls each step some sends after the one before. A hint only.
    /// </summary>
    public void PrefetchForSend(int step)
    {
        if (step == 0)
        {
            CacheLines.Prefetch(this, SendFieldsSpan);
        }
        else
        {
            direct?.PrefetchForWrite(step - 1);
        }
    }

    /// <summary>
    /// On the event loop: sends one whole frame (its 4-byte length header included) straight to the socket when the
    /// transport can (<see cref="IDirectWriteChannel"/>), the connection is open and nothing is queued ahead, and
    /// counts it as a frame and its bytes as sent. False: nothing was sent; write the payload through the pipeline.
    /// Outbound handlers do not see a frame sent this way, so use it only for frames none of them needs to see (a
    /// room's state broadcast: not a farewell, not anything a writer-idle check should count).
    /// </summary>
    public bool TrySendFrameNow(IByteBuffer frame)
    {
        if (Phase != ConnectionPhase.Open || direct is null)
        {
            return false;
        }

        var bytes = frame.ReadableBytes;
        if (!direct.TryWriteNow(frame))
        {
            return false;
        }

        FramesSent++;
        CountBytesSent(bytes);
        return true;
    }

    /// <summary>Keeps what the peer's farewell said it received, for the close record. Call on the event loop.</summary>
    public void RecordPeerFramesReceived(long frames) => PeerFramesReceived = frames;

    /// <summary>
    /// Graceful close: record the reason, send the farewell, flush, shut down the write side (FIN after every queued
    /// byte), keep reading and discarding until the peer's FIN or the drain deadline, then close. The peer is thereby
    /// never closed on with unread data in our receive buffer, which would turn our FIN into an RST. Any thread, any
    /// number of times: only the first close acts.
    /// </summary>
    /// <param name="farewell">Built on the event loop at the moment of sending, so counts in it are exact.</param>
    public Task<ConnectionClosedEvent> CloseGracefullyAsync(
        CloseReason reason, Func<TcpConnection, object?>? farewell = null, string? detail = null)
    {
        OnLoop(() => BeginGracefulClose(reason, farewell, detail));
        return Closed;
    }

    /// <summary>Abortive close: SO_LINGER 0 and close. Queued data is discarded and the peer gets an RST at once.</summary>
    public Task<ConnectionClosedEvent> AbortAsync(CloseReason reason, string? detail = null)
    {
        OnLoop(() => Abort(reason, 0, detail));
        return Closed;
    }

    /// <summary>Closes at once without draining: FIN, and whatever is still queued in the channel is dropped.</summary>
    public Task<ConnectionClosedEvent> CloseAsync(CloseReason reason, string? detail = null)
    {
        OnLoop(() =>
        {
            Record(reason, 0, detail);
            if (Phase == ConnectionPhase.Open)
            {
                Phase = ConnectionPhase.Closing;
            }

            CloseChannel();
        });
        return Closed;
    }

    /// <summary>The client as a PROXY protocol header names it; the socket's peer becomes <see cref="ProxyEndPoint"/>.</summary>
    internal void SetClientEndPoint(EndPoint client)
    {
        ProxyEndPoint = RemoteEndPoint;
        remoteEndPoint = FormatEndPoint(client);
    }

    internal void OnActive()
    {
        OpenedAt = Stopwatch.GetTimestamp();
        _ = RemoteEndPoint; // kept now: a closed stock channel no longer knows its peer
    }

    /// <summary>What was received since the last call, for metrics reported per read rather than per frame.</summary>
    internal (long Frames, long Bytes) TakeUnreportedReceived()
    {
        var unreported = (FramesReceived - reportedFramesReceived, BytesReceived - reportedBytesReceived);
        reportedFramesReceived = FramesReceived;
        reportedBytesReceived = BytesReceived;
        return unreported;
    }

    /// <summary>What was sent since the last call, for metrics reported per flush rather than per frame.</summary>
    internal (long Frames, long Bytes) TakeUnreportedSent()
    {
        var unreported = (FramesSent - reportedFramesSent, BytesSent - reportedBytesSent);
        reportedFramesSent = FramesSent;
        reportedBytesSent = BytesSent;
        return unreported;
    }

    internal void CountBytesReceived(int bytes) => BytesReceived += bytes;

    internal void CountBytesSent(int bytes) => BytesSent += bytes;

    /// <summary>A socket error from the transport (a read or a write): the connection is over whatever else happens.</summary>
    internal void OnSocketError(CloseReason reason, int errno, string detail)
    {
        Record(reason, errno, detail);
        if (Phase == ConnectionPhase.Open)
        {
            Phase = ConnectionPhase.Closing;
        }

        CloseChannel();
    }

    /// <summary>
    /// The peer's FIN. While this side is closing it is what the drain waited for: close now, and true. While open, the
    /// application decides what to say first (false).
    /// </summary>
    internal bool OnInputShutdown()
    {
        peerFinished = true;
        if (Phase == ConnectionPhase.Open)
        {
            return false;
        }

        // A farewell still flushing is owed to the peer, which may well read after its FIN: the flush's completion
        // closes (it sees peerFinished). Otherwise the drain waited for this.
        if (!farewellFlushing)
        {
            drainTimer?.Cancel();
            CloseChannel();
        }

        return true;
    }

    /// <summary>A close asked for through the pipeline, without a reason recorded, is still this side's decision.</summary>
    internal void OnCloseRequested()
    {
        Record(CloseReason.LocalClose, 0, null);
        if (Phase == ConnectionPhase.Open)
        {
            Phase = ConnectionPhase.Closing;
        }
    }

    /// <summary>The channel went inactive: settle the reason (nothing else explained it: the peer's FIN) and make the record.</summary>
    internal ConnectionClosedEvent OnInactive()
    {
        drainTimer?.Cancel();

        // On DotNetty's stock transport an RST can read as a plain EOF too: after a FIN, or when a blocked send met
        // the RST's error first (the kernel reports it once).
        Record(CloseReason.PeerClosed, 0, null);
        Phase = ConnectionPhase.Closed;
        return new ConnectionClosedEvent(
            Id, RemoteEndPoint, Reason!, Errno, Detail, Age, FramesReceived, FramesSent, BytesReceived, BytesSent, PeerFramesReceived);
    }

    internal void Complete(ConnectionClosedEvent evt) => closed.TrySetResult(evt);

    private bool Record(CloseReason reason, int errno, string? detail)
    {
        ArgumentNullException.ThrowIfNull(reason);
        if (Reason is not null)
        {
            return false;
        }

        Reason = reason;
        Errno = errno;
        Detail = detail;
        return true;
    }

    private void BeginGracefulClose(CloseReason reason, Func<TcpConnection, object?>? farewell, string? detail)
    {
        Record(reason, 0, detail);
        if (Phase != ConnectionPhase.Open)
        {
            return;
        }

        Phase = ConnectionPhase.Closing;
        if (!Channel.Active)
        {
            CloseChannel();
            return;
        }

        // Reading must go on while draining, even if backpressure had paused it: that is how the peer's FIN is seen.
        // (Turning AutoRead on starts a read; an extra Read() while one is pending would break the stock socket's
        // single receive operation.)
        Channel.Configuration.AutoRead = true;

        var message = farewell?.Invoke(this);
        farewellFlushing = true;
        var flushed = Channel.WriteAndFlushAsync(message ?? Unpooled.Empty);
        flushed.ContinueWith(
            static (_, s) => ((TcpConnection)s!).ShutdownOutputOrClose(),
            this,
            TaskContinuationOptions.ExecuteSynchronously);
    }

    private void ShutdownOutputOrClose()
    {
        if (!Channel.EventLoop.InEventLoop)
        {
            Channel.EventLoop.Execute(static s => ((TcpConnection)s!).ShutdownOutputOrClose(), this);
            return;
        }

        farewellFlushing = false;

        // Without a socket to half-close (an embedded channel, another transport), closing is all that is left. When
        // the peer's FIN came first (a half-closing transport kept our output open for the farewell), both directions
        // are done and there is nothing to drain.
        if (!Channel.Active || !SocketAccess.TryShutdownOutput(Channel) || peerFinished
            || Channel is IDuplexChannel { IsInputShutdown: true })
        {
            CloseChannel();
            return;
        }

        // The drain deadline starts once the farewell is out: a slow but reading peer gets all of it. A flush that
        // never completes is the slow-consumer policy's business, not this one's.
        drainTimer = Channel.EventLoop.Schedule(static s => ((TcpConnection)s!).CloseChannel(), this, drainTimeout);
    }

    private void Abort(CloseReason reason, int errno, string? detail)
    {
        Record(reason, errno, detail);
        if (Phase == ConnectionPhase.Closed)
        {
            return;
        }

        Phase = ConnectionPhase.Closing;
        SocketAccess.TryAbort(Channel);
        CloseChannel();
    }

    /// <summary>
    /// Closes the channel and observes the result. After our own abort DotNetty's stock <c>DoClose</c> meets a disposed
    /// socket and fails the close task, although the channel does close; nobody needs to hear about that.
    /// </summary>
    private void CloseChannel() =>
        Channel.CloseAsync().ContinueWith(
            static t => _ = t.Exception,
            CancellationToken.None,
            TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously,
            TaskScheduler.Default);

    private void OnLoop(Action action)
    {
        if (Channel.EventLoop.InEventLoop)
        {
            action();
            return;
        }

        try
        {
            Channel.EventLoop.Execute(action);
        }
        catch (RejectedExecutionException)
        {
            // The loop is shutting down and takes no more work; Transport.Epoll's closes every channel it still has,
            // DotNetty's stock loop leaves that to its owner (a host closes its channels before its loops).
        }
    }

    /// <summary>Prints IPv4-mapped IPv6 addresses as IPv4, which is what an operator expects to read.</summary>
    public static string FormatEndPoint(EndPoint? endPoint) => endPoint switch
    {
        IPEndPoint ip when ip.Address.IsIPv4MappedToIPv6 => new IPEndPoint(ip.Address.MapToIPv4(), ip.Port).ToString(),
        null => "-",
        _ => endPoint.ToString() ?? "-",
    };
}
