using DotNetty.Common.Concurrency;
using DotNetty.Transport.Channels;
using DotNetty.Transport.Channels.Sockets;
using GameProtocol;
using TcpConnections;
using GameProtocol.Pipeline;
using GameServer.Hosting;
using GameServer.Options;
using Microsoft.Extensions.Logging;

namespace GameServer.Game;

/// <summary>
/// The session state machine of one connection: Hello (a new session, or in version 2 the resume of one) within the
/// handshake timeout, then the game messages, and the Goodbye handshake. A message that is not allowed in the current
/// state is a protocol error with its own code, thrown: the pipeline's tail closes for it. The session itself
/// (<see cref="PlayerSession"/>) belongs to the <see cref="SessionStore"/> and may outlive this connection; this
/// handler ends connections only through the channel's <see cref="TcpConnection"/>. One instance per connection.
/// </summary>
public sealed class SessionHandler : ChannelHandlerAdapter
{
    private const int MaxPlayerNameLength = 32;

    private readonly GameServices services;
    private TcpConnection? connection;
    private PlayerSession? player;
    private IScheduledTask? handshakeTimer;

    public SessionHandler(GameServices services) => this.services = services;

    public override void ChannelActive(IChannelHandlerContext context)
    {
        connection = TcpConnection.Of(context.Channel);
        services.Registry.Add(connection);
        handshakeTimer = context.Executor.Schedule(
            static s => ((SessionHandler)s!).OnHandshakeTimeout(),
            this,
            TimeSpan.FromMilliseconds(services.Server.HandshakeTimeoutMs));
        context.FireChannelActive();
    }

    public override void ChannelInactive(IChannelHandlerContext context)
    {
        handshakeTimer?.Cancel();
        if (connection is not null)
        {
            if (player is not null)
            {
                // Kept for a resume when the peer's side dropped a resumable session; otherwise over.
                services.Sessions.ConnectionClosed(player, connection);
            }

            services.Registry.Remove(connection);
        }

        context.FireChannelInactive();
    }

    /// <summary>
    /// The peer sent FIN and the transport kept our output open (epoll with half-closure). A resumable session is
    /// dropped like any other (FIN back, no Goodbye: the session is not over, and its stream goes on into the replay
    /// buffer). Otherwise a running stream is finished first, then the server answers with Goodbye carrying the frames
    /// it received, so the peer can check that nothing was lost, and closes. (Without this the tail would close at
    /// once, cutting the stream.)
    /// </summary>
    public override void UserEventTriggered(IChannelHandlerContext context, object evt)
    {
        if (evt is ChannelInputShutdownEvent && connection is { Phase: ConnectionPhase.Open })
        {
            handshakeTimer?.Cancel();
            if (player is { Replay: not null })
            {
                _ = connection.CloseGracefullyAsync(CloseReason.PeerClosed, detail: "peer sent FIN; session kept for a resume");
            }
            else if (player?.Stream is { Finished: false } stream)
            {
                stream.OnFinished = AnswerFin;
            }
            else
            {
                AnswerFin();
            }

            return;
        }

        context.FireUserEventTriggered(evt);
    }

    private void AnswerFin()
    {
        EndSession(CloseReason.PeerClosed.Name);
        _ = connection!.CloseGracefullyAsync(
            CloseReason.PeerClosed,
            c => player is null ? null : GameConnectionProtocol.CreateGoodbye(CloseReason.PeerClosed, c),
            player is null ? "peer sent FIN before Hello" : "peer sent FIN; answered with Goodbye");
    }

    /// <summary>
    /// Every error on its way to the tail passes here, from the handlers below and from this one. A protocol error
    /// ends the session at once (the close that follows may drain for a while) and is logged as the game's. Other
    /// errors (a reset, a timeout) leave the decision to the close: a resumable session may be kept. The tail decides
    /// how the connection ends.
    /// </summary>
    public override void ExceptionCaught(IChannelHandlerContext context, Exception exception)
    {
        if (exception is ProtocolViolationException violation && connection is { Phase: ConnectionPhase.Open })
        {
            Log.ProtocolError(services.Logger, connection.Id, violation.Code, violation.Message);
            EndSession(CloseReason.ProtocolError.Name);
        }

        context.FireExceptionCaught(exception);
    }

    public override void ChannelWritabilityChanged(IChannelHandlerContext context)
    {
        if (context.Channel.IsWritable && player is not null && ReferenceEquals(player.Connection, connection))
        {
            player.Stream?.Resume();
        }

        context.FireChannelWritabilityChanged();
    }

    public override void ChannelRead(IChannelHandlerContext context, object message) => Handle(context, (IMessage)message);

    private void Handle(IChannelHandlerContext context, IMessage message)
    {
        var state = connection!;
        if (state.Phase != ConnectionPhase.Open)
        {
            // Draining after our own Goodbye: only the peer's answering Goodbye still matters.
            if (message is Goodbye answer)
            {
                state.RecordPeerFramesReceived(answer.FramesReceived);
                Log.PeerGoodbye(services.Logger, state.Id, answer.Reason, answer.FramesReceived, state.FramesSent);
            }

            return;
        }

        if (player is null)
        {
            if (message is not Hello hello)
            {
                throw new ProtocolViolationException(ProtocolErrorCodes.HelloRequired, $"{message.GetType().Name} before Hello");
            }

            StartSession(context, hello);
            player?.CountHandled();
            return;
        }

        player.CountHandled();

        if (player.PreviousToken is not null)
        {
            services.Sessions.Confirm(player, state); // any frame after a resume's Welcome proves the client has it
        }

        switch (message)
        {
            case Hello:
                throw new ProtocolViolationException(ProtocolErrorCodes.DuplicateHello, "Hello after the session started");
            case Ping ping:
                _ = context.WriteAndFlushAsync(new Pong(ping.Seq, ping.SentAtUnixMs));
                break;
            case Pong pong:
                // Pongs that answer the server's Pings are consumed by the heartbeat handler below.
                throw new ProtocolViolationException(ProtocolErrorCodes.UnexpectedPong, $"Pong {pong.Seq} answers no Ping of ours");
            case Goodbye goodbye:
                OnClientGoodbye(goodbye);
                break;
            case Ack ack when player.Sequenced:
                player.AcceptAck(state, ack.Received);
                break;
            case Reliable reliable when player.Sequenced:
                // Numbered and handled under the session's lock, so a takeover cannot interleave another connection's.
                lock (player.Gate)
                {
                    var verdict = player.AcceptReliable(state, reliable.Seq, reliable.Ack);
                    services.Metrics.ReliableReceived(verdict);
                    if (verdict == ReliableVerdict.Handle)
                    {
                        HandleReliable(reliable.Message);
                    }
                }

                break;
            case Ack or Reliable:
                throw new ProtocolViolationException(
                    ProtocolErrorCodes.UnexpectedMessage, $"{message.GetType().Name} is version 2; this session speaks version 1");
            case Echo or GameProtocol.JoinRoom or Move or StreamRequest when player.Sequenced:
                throw new ProtocolViolationException(
                    ProtocolErrorCodes.BadSequence, $"{message.GetType().Name} must travel inside Reliable in version 2");
            default:
                HandleReliable(message);
                break;
        }
    }

    /// <summary>The messages that version 2 numbers: handled once each.</summary>
    private void HandleReliable(IMessage message)
    {
        switch (message)
        {
            case Echo echo:
                var lostBefore = player!.Replay?.LostThrough ?? 0;
                player.SendReliable(echo);
                if (player.Replay is { } replay && replay.LostThrough != lostBefore && lostBefore == 0)
                {
                    // Answers are not flow-controlled: a client that asks without acknowledging pushes its oldest
                    // unacknowledged answers out, and from then on a resume is refused (resume_gap), never holed.
                    Log.ReplayOverflow(services.Logger, player.SessionId, replay.LostThrough, replay.Count, replay.Bytes);
                }

                break;
            case JoinRoom join:
                JoinRoom(join);
                break;
            case Move move:
                if (!float.IsFinite(move.X) || !float.IsFinite(move.Y))
                {
                    throw new ProtocolViolationException(ProtocolErrorCodes.InvalidArgument, "Move with a non-finite coordinate");
                }

                player!.Move(move.Seq, move.X, move.Y);
                break;
            case StreamRequest request:
                StartStream(request);
                break;
            default:
                throw new ProtocolViolationException(
                    ProtocolErrorCodes.UnexpectedMessage,
                    player!.Sequenced
                        ? $"{message.GetType().Name} is not a reliable message a client sends"
                        : $"{message.GetType().Name} is not sent by clients");
        }
    }

    private void StartSession(IChannelHandlerContext context, Hello hello)
    {
        if (hello.ProtocolVersion is < Framing.ProtocolVersion1 or > Framing.ProtocolVersion)
        {
            throw new ProtocolViolationException(
                ProtocolErrorCodes.UnsupportedVersion,
                $"protocol version {hello.ProtocolVersion} is not supported; this server speaks {Framing.ProtocolVersion1} to {Framing.ProtocolVersion}");
        }

        if (string.IsNullOrWhiteSpace(hello.PlayerName) || hello.PlayerName.Length > MaxPlayerNameLength)
        {
            throw new ProtocolViolationException(
                ProtocolErrorCodes.InvalidArgument, $"playerName must be 1 to {MaxPlayerNameLength} characters");
        }

        handshakeTimer?.Cancel();
        var state = connection!;
        var now = services.Time.GetUtcNow().ToUnixTimeMilliseconds();

        // Version 1 reads the token and ignores it, as it always did.
        if (hello.ProtocolVersion >= Framing.ProtocolVersion2 && !string.IsNullOrEmpty(hello.ResumeToken))
        {
            var outcome = services.Sessions.TryResume(
                hello.ResumeToken,
                hello.LastReceivedSeq,
                state,
                s => new Welcome(s.SessionId, services.Heartbeat.IntervalMs, now, s.ResumeToken, services.Sessions.Options.ResumeWindowMs, Resumed: true, s.LastReceivedSeq));
            if (!outcome.Resumed)
            {
                Log.ResumeRefused(services.Logger, state.Id, outcome.Code, outcome.Text);
                _ = state.CloseGracefullyAsync(GameCloseReasons.ResumeRefused, _ => new Error(outcome.Code, outcome.Text), $"{outcome.Code}: {outcome.Text}");
                return;
            }

            player = outcome.Session!;
            if (outcome.TakenOver is { } old)
            {
                _ = old.CloseGracefullyAsync(
                    GameCloseReasons.SessionTakenOver,
                    c => GameConnectionProtocol.CreateGoodbye(GameCloseReasons.SessionTakenOver, c),
                    $"session {player.SessionId} resumed on connection {state.Id}");
            }
        }
        else
        {
            player = services.Sessions.Open(state, hello.PlayerName, hello.ProtocolVersion);
            player.SendUnsequenced(new Welcome(
                player.SessionId,
                services.Heartbeat.IntervalMs,
                now,
                player.ResumeToken,
                player.Replay is null ? 0 : services.Sessions.Options.ResumeWindowMs));
            Log.SessionStarted(services.Logger, player.SessionId, hello.PlayerName, state.Id);
        }

        // Pings start once the client knows the interval; the idle timer below has been counting since connect.
        context.Channel.Pipeline.AddBefore(
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
    }

    private void JoinRoom(JoinRoom join)
    {
        if (string.IsNullOrWhiteSpace(join.RoomId) || join.RoomId.Length > services.Game.MaxRoomIdLength)
        {
            throw new ProtocolViolationException(
                ProtocolErrorCodes.InvalidArgument, $"roomId must be 1 to {services.Game.MaxRoomIdLength} characters");
        }

        services.Rooms.Join(player!, join.RoomId);
        Log.JoinedRoom(services.Logger, player!.SessionId, join.RoomId);
    }

    private void StartStream(StreamRequest request)
    {
        // The item's envelope (tag, index, bin header; in version 2 also the Reliable around it) needs a few bytes beyond the payload.
        var maxPayload = services.Server.MaxFrameBytes - (player!.Sequenced ? 64 : 32);
        if (request.Count < 0 || request.Count > services.Game.MaxStreamCount
            || request.PayloadBytes < 0 || request.PayloadBytes > maxPayload
            || request.IntervalMs < 0 || request.IntervalMs > 60_000)
        {
            throw new ProtocolViolationException(
                ProtocolErrorCodes.InvalidArgument,
                $"StreamRequest needs count 0..{services.Game.MaxStreamCount}, payloadBytes 0..{maxPayload}, intervalMs 0..60000");
        }

        if (player.Stream is { Finished: false })
        {
            throw new ProtocolViolationException(ProtocolErrorCodes.InvalidArgument, "a stream is already running");
        }

        player.Stream = new StreamSender(player, request);
        player.Stream.Start();
    }

    private void OnClientGoodbye(Goodbye goodbye)
    {
        var state = connection!;
        state.RecordPeerFramesReceived(goodbye.FramesReceived);
        Log.PeerGoodbye(services.Logger, state.Id, goodbye.Reason, goodbye.FramesReceived, state.FramesSent);
        EndSession(GameCloseReasons.ClientGoodbye.Name);
        _ = state.CloseGracefullyAsync(
            GameCloseReasons.ClientGoodbye,
            c => GameConnectionProtocol.CreateGoodbye(GameCloseReasons.ClientGoodbye, c),
            $"peer said '{goodbye.Reason}'");
    }

    private void OnHandshakeTimeout()
    {
        if (player is null && connection is { Phase: ConnectionPhase.Open })
        {
            var text = $"no Hello within {services.Server.HandshakeTimeoutMs} ms";
            _ = connection.CloseGracefullyAsync(
                GameCloseReasons.HandshakeTimeout, _ => new Error(ProtocolErrorCodes.HandshakeTimeout, text), text);
        }
    }

    /// <summary>Ends the session for good, if this connection still carries it: no resume after this.</summary>
    private void EndSession(string why)
    {
        if (player is not null)
        {
            services.Sessions.End(player, connection!, why);
        }
    }
}
