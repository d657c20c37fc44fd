using System.Diagnostics;
using DotNetty.Buffers;
using DotNetty.Common.Concurrency;
using DotNetty.Common.Utilities;
using DotNetty.Transport.Channels;
using GameProtocol;
using GameProtocol.Pipeline;
using TcpConnections;

namespace GameServer.Game;

/// <summary>What to do with an inbound reliable message.</summary>
public enum ReliableVerdict
{
    /// <summary>The next in sequence: handle it.</summary>
    Handle,

    /// <summary>Already handled (a resend after a resume): drop it.</summary>
    Duplicate,

    /// <summary>From a connection that no longer carries the session (taken over): drop it.</summary>
    NotOurs,
}

/// <summary>Where a session is in its life.</summary>
public enum SessionStatus
{
    /// <summary>A connection carries it.</summary>
    Attached,

    /// <summary>Its connection dropped; it waits for a resume until its window passes (version 2 only).</summary>
    Detached,

    /// <summary>Over for good: no resume, nothing more is sent.</summary>
    Ended,
}

/// <summary>
/// A player's session: identity, position and room, and in version 2 everything a resume needs: the sequence numbers
/// of both directions, the unacknowledged outbound messages, and the connection that carries it now (none while
/// detached; another after a resume). One lock (<see cref="Gate"/>) guards it all, because the connection that owns
/// it changes: after a resume the session's work runs on another event loop than before.
/// <para>
/// Ordering rule: every reliable message goes out through <see cref="SendReliable"/>, which numbers it and hands it to
/// the connection in that order under the lock. On the connection's own loop it is written at once; from any other
/// thread it joins a queue that one task on that loop drains, and nothing is written directly while that queue is
/// not empty. So the wire order is the sequence order whichever thread produced a message.
/// </para>
/// </summary>
public sealed class PlayerSession
{
    private readonly object gate = new();
    private readonly List<object> pending = [];
    private readonly TimeSpan ackDelay;
    private PlayerState state;
    private TcpConnection? connection;
    private IEventExecutor executor;
    private bool drainQueued;
    private bool pendingFlush;
    private bool ackScheduled;
    private long lastSentSeq;
    private long lastReceivedSeq;
    private long lastAckSent;

    public PlayerSession(TcpConnection connection, string sessionId, string playerName, int protocolVersion, ReplayBuffer? replay, TimeSpan ackDelay)
    {
        this.connection = connection;
        executor = connection.Channel.EventLoop;
        SessionId = sessionId;
        PlayerName = playerName;
        ProtocolVersion = protocolVersion;
        Replay = replay;
        this.ackDelay = ackDelay;
        state = new PlayerState(sessionId, 0, 0, 0);
        EncodedSessionId = StateUpdateFrame.EncodeId(sessionId);
    }

    /// <summary>The lock of everything below. Take it to handle one inbound reliable message atomically.</summary>
    public object Gate => gate;

    public string SessionId { get; }

    /// <summary>The session id as its room's ticks write it (<see cref="StateUpdateFrame.EncodeId"/>), made once.</summary>
    public byte[] EncodedSessionId { get; }

    public string PlayerName { get; }

    public int ProtocolVersion { get; }

    /// <summary>Version 2: reliable messages are numbered, acknowledged and (with a replay buffer) resumable.</summary>
    public bool Sequenced => ProtocolVersion >= Framing.ProtocolVersion2;

    /// <summary>Null when resume is off or the session is version 1.</summary>
    public ReplayBuffer? Replay { get; }

    /// <summary>The connection that carries the session now; null while detached or after it ended.</summary>
    public TcpConnection? Connection => Volatile.Read(ref connection);

    /// <summary>The current connection's loop, or the last one's while detached: where the session's timers run.</summary>
    public IEventExecutor Executor
    {
        get
        {
            lock (gate)
            {
                return executor;
            }
        }
    }

    public SessionStatus Status { get; private set; }

    public Room? Room { get; set; }

    public StreamSender? Stream { get; set; }

    /// <summary>The token that resumes this session (the store issues and rotates it); null when not resumable.</summary>
    public string? ResumeToken { get; internal set; }

    /// <summary>The token before the last resume, honoured until the client proves it got the new one.</summary>
    internal string? PreviousToken { get; set; }

    /// <summary>Whether a frame arrived on the current connection after its Hello (so the client has our Welcome).</summary>
    internal bool Confirmed { get; set; }

    /// <summary>Counts attaches and detaches, so a timer set in one period does nothing in a later one.</summary>
    internal int Generation { get; private set; }

    internal long DetachedAt { get; private set; }

    internal System.Threading.ITimer? ExpiryTimer { get; set; }

    public long LastSentSeq => lastSentSeq;

    public long LastReceivedSeq => lastReceivedSeq;

    /// <summary>Messages from the client handled in this session, its Hellos included (a resume's too).</summary>
    public long MessagesHandled => Interlocked.Read(ref messagesHandled);

    private long messagesHandled;

    public void CountHandled() => Interlocked.Increment(ref messagesHandled);

    public PlayerState State => Volatile.Read(ref state);

    public void Move(long seq, float x, float y) => Volatile.Write(ref state, new PlayerState(SessionId, x, y, seq));

    /// <summary>
    /// Whether a producer that can wait (a stream) may send one more message of about <paramref name="bytes"/> now: the
    /// session is live, the replay buffer has room for it (<see cref="ReplayBuffer.HasRoomFor"/>), and the connection,
    /// if any, is writable. While detached a resumable session goes on producing into its buffer.
    /// </summary>
    public bool CanProduce(int bytes)
    {
        lock (gate)
        {
            if (Status == SessionStatus.Ended || (Replay is { } replay && !replay.HasRoomFor(bytes)))
            {
                return false;
            }

            // While frames wait for the drain task, the channel's writability does not count them yet: wait for it.
            return connection is { } c
                ? !drainQueued && c.Phase == ConnectionPhase.Open && c.Channel.Active && c.Channel.IsWritable
                : Replay is not null;
        }
    }

    /// <summary>Serialises this session's Presence announcements (never taken under a session's lock).</summary>
    internal object PresenceGate { get; } = new();

    /// <summary>What the room was last told about this session (under <see cref="PresenceGate"/>).</summary>
    internal bool AnnouncedConnected { get; set; } = true;

    /// <summary>Sends one reliable message: numbered and kept for replay in version 2, as it is in version 1.</summary>
    public void SendReliable(IMessage message, bool flush = true)
    {
        lock (gate)
        {
            if (Status == SessionStatus.Ended)
            {
                return;
            }

            if (!Sequenced)
            {
                Deliver(message, flush);
                return;
            }

            var seq = ++lastSentSeq;
            lastAckSent = lastReceivedSeq;
            var payload = ProtocolSerializer.Serialize(new Reliable(seq, lastReceivedSeq, message));
            Replay?.Append(seq, payload);
            Deliver(payload, flush);
        }
    }

    /// <summary>Sends a message outside the sequence (Welcome, Ack, a StateUpdate after a gap), in order with the rest.</summary>
    public void SendUnsequenced(IMessage message, bool flush = true)
    {
        lock (gate)
        {
            if (Status != SessionStatus.Ended)
            {
                Deliver(message, flush);
            }
        }
    }

    /// <summary>Flushes what <see cref="SendReliable"/> wrote without flushing.</summary>
    public void Flush()
    {
        lock (gate)
        {
            if (drainQueued)
            {
                pendingFlush = true; // the drain writes after what was written directly, and flushes both
            }
            else if (connection is { } c)
            {
                c.Channel.Flush();
            }
        }
    }

    /// <summary>
    /// Takes a reliable message's number and acknowledgement (call with <see cref="Gate"/> held, on the connection's
    /// loop). Only <see cref="ReliableVerdict.Handle"/> may be handled: a duplicate of one handled before (a resend
    /// after a resume) or a message from a connection that no longer carries the session is dropped. A gap is a
    /// protocol error.
    /// </summary>
    public ReliableVerdict AcceptReliable(TcpConnection from, long seq, long ack)
    {
        if (!ReferenceEquals(connection, from) || Status != SessionStatus.Attached)
        {
            return ReliableVerdict.NotOurs;
        }

        AcceptAck(from, ack);
        if (seq <= lastReceivedSeq)
        {
            return ReliableVerdict.Duplicate;
        }

        if (seq != lastReceivedSeq + 1)
        {
            throw new ProtocolViolationException(
                ProtocolErrorCodes.BadSequence, $"reliable seq {seq} after {lastReceivedSeq}: a gap");
        }

        lastReceivedSeq = seq;
        ScheduleAck();
        return ReliableVerdict.Handle;
    }

    /// <summary>The client's cumulative acknowledgement: what it has is dropped from the replay buffer.</summary>
    public void AcceptAck(TcpConnection from, long ack)
    {
        lock (gate)
        {
            if (!ReferenceEquals(connection, from))
            {
                return;
            }

            if (ack < 0 || ack > lastSentSeq)
            {
                throw new ProtocolViolationException(
                    ProtocolErrorCodes.BadSequence, $"ack {ack} of reliable messages, but {lastSentSeq} were sent");
            }

            if (Replay is { } replay && replay.TrimThrough(ack) > 0)
            {
                Stream?.Wake(); // it may have waited for room
            }
        }
    }

    /// <summary>The connection dropped: keep everything, send nothing, until a resume or the end.</summary>
    internal void Detach()
    {
        connection = null;
        ResetDelivery();
        Status = SessionStatus.Detached;
        Generation++;
        DetachedAt = Stopwatch.GetTimestamp();
    }

    /// <summary>Moves the session to <paramref name="next"/>; returns the connection that carried it (a takeover), if any.</summary>
    internal TcpConnection? AttachTo(TcpConnection next)
    {
        var previous = connection;
        Volatile.Write(ref connection, next);
        executor = next.Channel.EventLoop;
        ResetDelivery();
        Status = SessionStatus.Attached;
        Confirmed = false;
        Generation++;
        return previous;
    }

    /// <summary>Sends again every buffered message after <paramref name="clientHas"/>, in order; returns how many.</summary>
    internal int ReplayAfter(long clientHas)
    {
        if (Replay is not { } replay)
        {
            return 0;
        }

        replay.TrimThrough(clientHas); // an implicit ack: what is left is exactly what the client lacks
        var count = 0;
        foreach (var payload in replay.Payloads)
        {
            Deliver(payload, flush: false);
            count++;
        }

        return count;
    }

    /// <summary>Over for good: the buffer goes, nothing more is sent.</summary>
    internal void End()
    {
        Status = SessionStatus.Ended;
        Generation++;
        ResetDelivery();
        Replay?.Clear();
        ExpiryTimer?.Dispose();
        ExpiryTimer = null;
    }

    private void ResetDelivery()
    {
        pending.Clear();
        drainQueued = false;
        pendingFlush = false;
        ackScheduled = false;
    }

    private void ScheduleAck()
    {
        if (ackScheduled || connection is not { } target)
        {
            return;
        }

        ackScheduled = true;
        target.Channel.EventLoop.Schedule(() => SendAckIfStill(target), ackDelay);
    }

    private void SendAckIfStill(TcpConnection target)
    {
        lock (gate)
        {
            if (!ReferenceEquals(connection, target) || Status != SessionStatus.Attached)
            {
                return;
            }

            ackScheduled = false;
            if (lastAckSent < lastReceivedSeq)
            {
                lastAckSent = lastReceivedSeq;
                Deliver(new Ack(lastReceivedSeq), flush: true);
            }
        }
    }

    /// <summary>Writes a frame (an <see cref="IMessage"/> or an encoded payload) to the current connection in order. Under the lock.</summary>
    private void Deliver(object frame, bool flush)
    {
        if (connection is not { } target)
        {
            return; // detached: a reliable message waits in the replay buffer
        }

        if (target.Channel.EventLoop.InEventLoop && !drainQueued)
        {
            Write(target, frame, flush);
            return;
        }

        pending.Add(frame);
        pendingFlush |= flush;
        if (!drainQueued)
        {
            drainQueued = true;
            target.Channel.EventLoop.Execute(() => Drain(target));
        }
    }

    private void Drain(TcpConnection target)
    {
        lock (gate)
        {
            if (!ReferenceEquals(connection, target) || !drainQueued)
            {
                return; // the session moved on; the queue was for a connection it no longer has
            }

            foreach (var frame in pending)
            {
                Write(target, frame, flush: false);
            }

            pending.Clear();
            drainQueued = false;
            if (pendingFlush)
            {
                pendingFlush = false;
                target.Channel.Flush();
            }

            Stream?.Wake(); // a stream waits while frames queue for this task
        }
    }

    private static void Write(TcpConnection target, object frame, bool flush)
    {
        if (target.Phase != ConnectionPhase.Open || !target.Channel.Active)
        {
            return;
        }

        var message = frame is byte[] payload ? Unpooled.WrappedBuffer(payload) : frame;
        _ = flush ? target.Channel.WriteAndFlushAsync(message) : target.Channel.WriteAsync(message);
    }
}
