using System.Diagnostics;
using DotNetty.Buffers;
using DotNetty.Common.Concurrency;
using DotNetty.Transport.Channels;
using DotNetty.Transport.Channels.Sockets;
using GameProtocol;
using GameProtocol.Pipeline;
using GameServer.Game;
using TcpConnections;

namespace GameServer.Cluster;

/// <summary>
/// A gateway's session handler, in place of <see cref="SessionHandler"/>: the same protocol on the wire, with the
/// session and the room in grains. It owns only what belongs to the connection: the handshake, the Goodbye, the order
/// of writes, and one grain call at a time per connection (messages that arrive meanwhile go together in the next
/// call, so a busy client costs fewer calls, and the grain sees them in order). Reliable frames from the grain are
/// written strictly in sequence: one already written is skipped (a push repeated), one beyond the next is skipped
/// too (an earlier push was lost; the grain pushes again until the client acknowledges). Version 1 has neither
/// numbers nor acknowledgements on the wire, so the gateway keeps them for it: it numbers the client's messages
/// (a retried call is still handled once) and acknowledges what it wrote, while the socket is writable (so a stream
/// to a slow version 1 reader waits, as it does in one process). Only version 2 can resume on another gateway.
/// </summary>
public sealed class ClusterSessionHandler : ChannelHandlerAdapter
{
    private const int MaxPlayerNameLength = 32;

    /// <summary>Messages waiting for the grain beyond which the connection stops reading (TCP pushes back on the client).</summary>
    private const int MaxQueued = 1024;

    /// <summary>Reliable frames held that arrived ahead of one still on its way (a push before a call's answer).</summary>
    private const int MaxEarly = 4096;

    private static readonly TimeSpan FirstRetryDelay = TimeSpan.FromMilliseconds(50);
    private static readonly TimeSpan MaxRetryDelay = TimeSpan.FromSeconds(1);

    private readonly GameServices services;
    private readonly Gateway gateway;
    private readonly List<Inbound> queued = [];
    private readonly SortedDictionary<long, Frame> early = [];
    private IChannelHandlerContext? context;
    private TcpConnection? connection;
    private string key = string.Empty;
    private IScheduledTask? handshakeTimer;
    private ISessionGrain? grain;
    private string? sessionId;
    private bool resumable;
    private bool starting;
    private bool calling;
    private bool ended;
    private bool paused;
    private Goodbye? goodbye;
    private Action? afterDrain;
    private long lastWritten;
    private long lastAckWritten;
    private bool sequenced;
    private long version1Seq;
    private long version1Acked;

    public ClusterSessionHandler(GameServices services, Gateway gateway)
    {
        this.services = services;
        this.gateway = gateway;
    }

    /// <summary>Whether the connection is open (for the grain's route check). Any thread.</summary>
    public bool IsOpen => connection is { Phase: ConnectionPhase.Open } c && c.Channel.Active;

    /// <summary>
    /// Where a room update goes now: the connection, if it carries a session. Any thread. Whether it is still open and
    /// writable is for its loop to check when it sends (<see cref="UpdateBatch"/>), which counts the unwritable ones.
    /// </summary>
    public TcpConnection? UpdateTarget() =>
        Volatile.Read(ref sessionId) is not null && connection is { Phase: ConnectionPhase.Open } c ? c : null;

    public override void ChannelActive(IChannelHandlerContext context)
    {
        this.context = context;
        connection = TcpConnection.Of(context.Channel);
        key = gateway.Register(this, connection);
        services.Registry.Add(connection);
        handshakeTimer = context.Executor.Schedule(
            static s => ((ClusterSessionHandler)s!).OnHandshakeTimeout(),
            this,
            TimeSpan.FromMilliseconds(services.Server.HandshakeTimeoutMs));
        context.FireChannelActive();
    }

    public override void ChannelInactive(IChannelHandlerContext context)
    {
        handshakeTimer?.Cancel();
        if (connection is not null)
        {
            gateway.Unregister(key);
            services.Registry.Remove(connection);
            if (sessionId is not null && !ended)
            {
                // Kept for a resume when the peer's side dropped it (or this gateway asked it to reconnect); otherwise over.
                var reason = connection.Reason?.Name ?? CloseReason.LocalClose.Name;
                var session = grain!;
                var at = key;
                gateway.Track(CallAsync(async () =>
                {
                    await session.Dropped(at, reason);
                    return true;
                }));
            }
        }

        context.FireChannelInactive();
    }

    public override void UserEventTriggered(IChannelHandlerContext context, object evt)
    {
        if (evt is ChannelInputShutdownEvent && connection is { Phase: ConnectionPhase.Open })
        {
            handshakeTimer?.Cancel();
            // A FIN after the client's Goodbye ends its leave: the Goodbye's answer (afterDrain) closes, not a resume.
            if (sessionId is not null && resumable && goodbye is null)
            {
                _ = connection.CloseGracefullyAsync(CloseReason.PeerClosed, detail: "peer sent FIN; session kept for a resume");
            }
            else if (sessionId is not null || starting)
            {
                // What the client sent before its FIN is handled first: the Goodbye's count covers it. Whether the
                // session is kept is known only once it started (a FIN may come while its Hello is with the grain).
                afterDrain ??= () =>
                {
                    if (resumable)
                    {
                        _ = connection.CloseGracefullyAsync(CloseReason.PeerClosed, detail: "peer sent FIN; session kept for a resume");
                        return;
                    }

                    EndSession(CloseReason.PeerClosed.Name);
                    _ = connection.CloseGracefullyAsync(
                        CloseReason.PeerClosed, c => GameConnectionProtocol.CreateGoodbye(CloseReason.PeerClosed, c), "peer sent FIN; answered with Goodbye");
                };
                PumpNext();
            }
            else
            {
                _ = connection.CloseGracefullyAsync(CloseReason.PeerClosed, detail: "peer sent FIN before Hello");
            }

            return;
        }

        context.FireUserEventTriggered(evt);
    }

    public override void ExceptionCaught(IChannelHandlerContext context, Exception exception)
    {
        if (exception is ProtocolViolationException violation && connection is { Phase: ConnectionPhase.Open })
        {
            Log.ProtocolError(services.Logger, connection.Id, violation.Code, violation.Message);
            EndSession(CloseReason.ProtocolError.Name);
        }

        context.FireExceptionCaught(exception);
    }

    public override void ChannelRead(IChannelHandlerContext context, object message)
    {
        var state = connection!;
        if (state.Phase != ConnectionPhase.Open)
        {
            if (message is Goodbye answer)
            {
                state.RecordPeerFramesReceived(answer.FramesReceived);
                Log.PeerGoodbye(services.Logger, state.Id, answer.Reason, answer.FramesReceived, state.FramesSent);
            }

            return;
        }

        if (sessionId is null && !starting)
        {
            if (message is not Hello hello)
            {
                throw new ProtocolViolationException(ProtocolErrorCodes.HelloRequired, $"{message.GetType().Name} before Hello");
            }

            StartSession(hello);
            return;
        }

        if (goodbye is not null)
        {
            return; // the client said Goodbye: what it sends after that is not part of the session
        }

        switch (message)
        {
            case Hello:
                throw new ProtocolViolationException(ProtocolErrorCodes.DuplicateHello, "Hello after the session started");
            case Ping ping:
                _ = context.WriteAndFlushAsync(new Pong(ping.Seq, ping.SentAtUnixMs));
                break;
            case Pong pong:
                throw new ProtocolViolationException(ProtocolErrorCodes.UnexpectedPong, $"Pong {pong.Seq} answers no Ping of ours");
            case Goodbye bye:
                state.RecordPeerFramesReceived(bye.FramesReceived);
                Log.PeerGoodbye(services.Logger, state.Id, bye.Reason, bye.FramesReceived, state.FramesSent);

                // The reason is the client's Goodbye from now on, whatever ends the connection before it is answered
                // (that waits for a grain call already out, seconds while a silo is being declared dead): a client
                // that stops waiting and resets or closes has still left, and its session is not kept for a resume.
                state.TrySetReason(GameCloseReasons.ClientGoodbye, $"peer said '{bye.Reason}'");
                goodbye = bye;
                afterDrain ??= FinishGoodbye;
                PumpNext(); // answers once everything before it is handled
                break;
            case Ack ack when sequenced:
                Enqueue(new Inbound(0, ack.Received, null));
                break;
            case Reliable reliable when sequenced:
                Enqueue(new Inbound(reliable.Seq, reliable.Ack, ProtocolSerializer.Serialize(reliable.Message)));
                break;
            case Ack or Reliable:
                throw new ProtocolViolationException(
                    ProtocolErrorCodes.UnexpectedMessage, $"{message.GetType().Name} is version 2; this session speaks version 1");
            case Echo or GameProtocol.JoinRoom or Move or StreamRequest when sequenced:
                throw new ProtocolViolationException(
                    ProtocolErrorCodes.BadSequence, $"{message.GetType().Name} must travel inside Reliable in version 2");
            case Echo or GameProtocol.JoinRoom or Move or StreamRequest:
                Enqueue(new Inbound(++version1Seq, version1Acked, ProtocolSerializer.Serialize((IMessage)message)));
                break;
            default:
                throw new ProtocolViolationException(ProtocolErrorCodes.UnexpectedMessage, $"{message.GetType().Name} is not sent by clients");
        }
    }

    /// <summary>Reliable messages the session produced on its own (a Presence, a stream, a repeat). From an Orleans thread.</summary>
    internal void OnPushed(Frame[] frames) => OnLoop(() =>
    {
        if (!IsOpen)
        {
            return;
        }

        if (starting)
        {
            Hold(frames); // ahead of the Welcome: written after it
        }
        else if (sessionId is not null)
        {
            Write(frames);
        }
    });

    /// <summary>
    /// The session no longer runs on this connection: resumed on another (perhaps on another gateway:
    /// <c>session_taken_over</c>), or it took this one for lost (<c>reconnect</c>: the client comes back through the
    /// resume). Closed with Goodbye(<paramref name="reason"/>); no drop to report, the session knows.
    /// </summary>
    internal void OnMovedAway(CloseReason reason, string detail) => OnLoop(() =>
    {
        if (connection is { Phase: ConnectionPhase.Open } state)
        {
            ended = true;
            _ = state.CloseGracefullyAsync(reason, c => GameConnectionProtocol.CreateGoodbye(reason, c), detail);
        }
    });

    private void StartSession(Hello hello)
    {
        if (hello.ProtocolVersion is < Framing.ProtocolVersion1 or > Framing.ProtocolVersion)
        {
            throw new ProtocolViolationException(
                ProtocolErrorCodes.UnsupportedVersion,
                $"protocol version {hello.ProtocolVersion} is not supported; this server speaks {Framing.ProtocolVersion1} to {Framing.ProtocolVersion}");
        }

        if (string.IsNullOrWhiteSpace(hello.PlayerName) || hello.PlayerName.Length > MaxPlayerNameLength)
        {
            throw new ProtocolViolationException(ProtocolErrorCodes.InvalidArgument, $"playerName must be 1 to {MaxPlayerNameLength} characters");
        }

        handshakeTimer?.Cancel();
        var route = new Route(gateway.Reference, key);
        var heartbeat = services.Heartbeat.IntervalMs;
        sequenced = hello.ProtocolVersion >= Framing.ProtocolVersion2;
        var resume = sequenced && !string.IsNullOrEmpty(hello.ResumeToken); // version 1 reads the token and ignores it
        Func<Task<SessionReply>> call;
        if (resume)
        {
            var token = hello.ResumeToken!;
            var dot = token.IndexOf('.', StringComparison.Ordinal);
            if (dot <= 0)
            {
                Refuse(ProtocolErrorCodes.ResumeUnknown, "no session has this resume token");
                return;
            }

            var session = gateway.Client.GetGrain<ISessionGrain>(token[..dot]);
            grain = session;
            lastWritten = hello.LastReceivedSeq; // the replay starts after what the client has
            call = () => session.Resume(token, hello.LastReceivedSeq, route, heartbeat);
        }
        else
        {
            var session = gateway.Client.GetGrain<ISessionGrain>(Guid.NewGuid().ToString("N"));
            grain = session;
            var version = hello.ProtocolVersion;
            call = () => session.Open(hello.PlayerName, version, route, heartbeat);
        }

        starting = true;
        Call(call, reply => OnStarted(reply, resume, hello.PlayerName));
    }

    private void OnStarted(SessionReply reply, bool resume, string playerName)
    {
        starting = false;
        if (!IsOpen)
        {
            if (reply.Ok && !ended)
            {
                // The connection went while its Hello was with the grain: the session was attached to it, so report the drop.
                var session = grain!;
                var at = key;
                var reason = connection!.Reason?.Name ?? CloseReason.LocalClose.Name;
                gateway.Track(CallAsync(async () =>
                {
                    await session.Dropped(at, reason);
                    return true;
                }));
            }

            return;
        }

        if (!reply.Ok)
        {
            if (resume)
            {
                Refuse(reply.Code, reply.Text);
            }
            else
            {
                context!.FireExceptionCaught(new ProtocolViolationException(reply.Code, reply.Text));
            }

            return;
        }

        Volatile.Write(ref sessionId, reply.SessionId);
        if (resume)
        {
            services.Metrics.SessionResumed(TimeSpan.FromMilliseconds(reply.AwayMs), reply.Replayed, reply.TookOver);
        }
        else
        {
            Log.SessionStarted(services.Logger, reply.SessionId, playerName, connection!.Id);
        }

        Write(reply.Frames);
        resumable = sequenced && services.Sessions.Options.ResumeEnabled;

        // Pings start once the client knows the interval; the idle timer has been counting since connect.
        context!.Channel.Pipeline.AddBefore(
            context.Name,
            "heartbeat",
            new HeartbeatHandler(
                services.Heartbeat,
                GameConnectionProtocol.Instance,
                services.Time,
                services.Metrics.Connections,
                TimeSpan.FromMilliseconds(services.Server.SlowConsumerTimeoutMs),
                readTcpInfo: null,
                logger: services.ConnectionLogger));
        PumpNext();
    }

    private void Enqueue(Inbound inbound)
    {
        queued.Add(inbound);
        if (queued.Count >= MaxQueued && !paused)
        {
            paused = true;
            context!.Channel.Configuration.AutoRead = false;
        }

        PumpNext();
    }

    /// <summary>Sends what is queued in one call, unless a call is already out; answers a Goodbye once all is handled.</summary>
    private void PumpNext()
    {
        if (calling || starting || sessionId is null || ended || !IsOpen)
        {
            return;
        }

        if (queued.Count == 0)
        {
            if (afterDrain is { } then)
            {
                afterDrain = null;
                then();
            }

            return;
        }

        var batch = queued.ToArray();
        queued.Clear();
        if (paused)
        {
            paused = false;
            context!.Channel.Configuration.AutoRead = true;
        }

        var session = grain!;
        var at = key;
        Call(() => session.Receive(at, batch), OnReceived);
    }

    private void OnReceived(SessionReply reply)
    {
        if (!IsOpen || ended)
        {
            return;
        }

        if (reply.TakenOver is { } why)
        {
            OnMovedAway(GameCloseReasons.SessionTakenOver, why);
            return;
        }

        if (reply.Reconnect)
        {
            OnMovedAway(GameCloseReasons.Reconnect, "the session took this connection for lost");
            return;
        }

        if (!reply.Ok)
        {
            // The grain ended the session (a gap, a bad argument): the tail closes with the Error.
            ended = true;
            Log.ProtocolError(services.Logger, connection!.Id, reply.Code, reply.Text);
            context!.FireExceptionCaught(new ProtocolViolationException(reply.Code, reply.Text));
            return;
        }

        Write(reply.Frames);
        if (sequenced && reply.AckThrough > lastAckWritten)
        {
            lastAckWritten = reply.AckThrough;
            _ = connection!.Channel.WriteAndFlushAsync(new Ack(reply.AckThrough));
        }

        PumpNext();
    }

    private void FinishGoodbye()
    {
        EndSession(GameCloseReasons.ClientGoodbye.Name);
        _ = connection!.CloseGracefullyAsync(
            GameCloseReasons.ClientGoodbye,
            c => GameConnectionProtocol.CreateGoodbye(GameCloseReasons.ClientGoodbye, c),
            $"peer said '{goodbye!.Reason}'");
    }

    /// <summary>Ends the session for good on behalf of this connection (the grain ignores it if another carries it now).</summary>
    private void EndSession(string why)
    {
        if (sessionId is null || ended)
        {
            return;
        }

        ended = true;
        var session = grain!;
        var at = key;
        gateway.Track(CallAsync(async () =>
        {
            await session.End(at, why);
            return true;
        }));
    }

    /// <summary>
    /// On the loop: reliable frames strictly in sequence (one already written is skipped; one ahead of a gap is held
    /// until the gap fills, by the late answer or by the grain's repeat), unsequenced ones as they come; one flush.
    /// </summary>
    private void Write(Frame[] frames)
    {
        var channel = connection!.Channel;
        var wrote = false;
        foreach (var frame in frames)
        {
            if (frame.Seq > 0)
            {
                if (frame.Seq != lastWritten + 1)
                {
                    Hold([frame]);
                    continue;
                }

                lastWritten = frame.Seq;
            }

            _ = channel.WriteAsync(Unpooled.WrappedBuffer(frame.Payload));
            wrote = true;
            while (early.Remove(lastWritten + 1, out var next))
            {
                lastWritten = next.Seq;
                _ = channel.WriteAsync(Unpooled.WrappedBuffer(next.Payload));
            }
        }

        if (wrote)
        {
            channel.Flush();
            AcknowledgeWritten();
        }
    }

    public override void ChannelWritabilityChanged(IChannelHandlerContext context)
    {
        if (context.Channel.IsWritable)
        {
            AcknowledgeWritten();
        }

        context.FireChannelWritabilityChanged();
    }

    /// <summary>
    /// Version 1: tells the session what was written, which frees its replay buffer, only while the socket takes
    /// more: a stream to a reader that stalls waits for it instead of piling up here.
    /// </summary>
    private void AcknowledgeWritten()
    {
        if (sequenced || sessionId is null || lastWritten <= version1Acked || !connection!.Channel.IsWritable)
        {
            return;
        }

        version1Acked = lastWritten;
        Enqueue(new Inbound(0, lastWritten, null));
    }

    /// <summary>Keeps reliable frames that came ahead of their turn (bounded: beyond it the grain's repeat brings them).</summary>
    private void Hold(Frame[] frames)
    {
        foreach (var frame in frames)
        {
            if (frame.Seq > lastWritten && early.Count < MaxEarly)
            {
                early[frame.Seq] = frame;
            }
        }

        while (early.Count > 0 && early.First().Key <= lastWritten)
        {
            early.Remove(early.First().Key);
        }
    }

    private void Refuse(string code, string text)
    {
        Log.ResumeRefused(services.Logger, connection!.Id, code, text);
        _ = connection.CloseGracefullyAsync(GameCloseReasons.ResumeRefused, _ => new Error(code, text), $"{code}: {text}");
    }

    private void OnHandshakeTimeout()
    {
        if (sessionId is null && !starting && connection is { Phase: ConnectionPhase.Open })
        {
            var text = $"no Hello within {services.Server.HandshakeTimeoutMs} ms";
            _ = connection.CloseGracefullyAsync(GameCloseReasons.HandshakeTimeout, _ => new Error(ProtocolErrorCodes.HandshakeTimeout, text), text);
        }
    }

    /// <summary>One grain call at a time: its answer is handled on the connection's loop.</summary>
    private void Call(Func<Task<SessionReply>> call, Action<SessionReply> onReply)
    {
        calling = true;
        _ = AnswerAsync();

        async Task AnswerAsync()
        {
            SessionReply? reply = null;
            Exception? failure = null;
            try
            {
                reply = await CallAsync(call);
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                failure = ex;
            }

            OnLoop(() =>
            {
                calling = false;
                if (reply is not null)
                {
                    onReply(reply);
                }
                else
                {
                    OnUnavailable(failure!);
                }
            });
        }
    }

    /// <summary>
    /// A grain call, retried while the cluster recovers (a silo died and its grains are moving; Redis restarts) for
    /// up to <c>Cluster:GrainCallTimeoutMs</c>. Retrying is safe: the session grain drops what it already handled.
    /// </summary>
    private async Task<T> CallAsync<T>(Func<Task<T>> call)
    {
        var timeout = TimeSpan.FromMilliseconds(gateway.Options.GrainCallTimeoutMs);
        var since = Stopwatch.StartNew();
        var delay = FirstRetryDelay;
        var logged = false;
        while (true)
        {
            try
            {
                return await call();
            }
            catch (Exception ex) when (ex is not OutOfMemoryException && since.Elapsed + delay < timeout)
            {
                if (!logged)
                {
                    logged = true;
                    Log.ClusterCallRetry(services.Logger, key, $"{ex.GetType().Name}: {ex.Message}", (long)(timeout - since.Elapsed).TotalMilliseconds);
                }

                await Task.Delay(delay);
                delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, MaxRetryDelay.Ticks));
            }
        }
    }

    /// <summary>The cluster did not answer in time: the client is asked to reconnect; its session waits in the cluster.</summary>
    private void OnUnavailable(Exception failure)
    {
        if (connection is { Phase: ConnectionPhase.Open } state)
        {
            Log.ClusterUnavailable(services.Logger, key, gateway.Options.GrainCallTimeoutMs, $"{failure.GetType().Name}: {failure.Message}");
            _ = state.CloseGracefullyAsync(
                GameCloseReasons.Reconnect, c => GameConnectionProtocol.CreateGoodbye(GameCloseReasons.Reconnect, c), "the cluster did not answer");
        }
    }

    private void OnLoop(Action action)
    {
        if (context is null)
        {
            return;
        }

        try
        {
            context.Executor.Execute(action);
        }
        catch (RejectedExecutionException)
        {
            // The loop is shutting down with the process: the connection goes with it.
        }
    }
}
