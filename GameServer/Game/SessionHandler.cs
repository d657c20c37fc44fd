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
/// The session state machine: Hello within the handshake timeout, then the game messages, and the Goodbye
/// handshake. A message that is not allowed in the current state is a protocol error with its own code, thrown: the
/// pipeline's tail closes for it. Ends connections only through the channel's <see cref="TcpConnection"/>. One
/// instance per connection.
/// </summary>
public sealed class SessionHandler : ChannelHandlerAdapter
{
    private const int MaxPlayerNameLength = 32;

    private readonly GameServices services;
    private TcpConnection? connection;
    private PlayerSession? player;
    private IScheduledTask? handshakeTimer;
    private StreamSender? stream;
    private long messagesHandled;

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
        stream?.Stop();
        if (player is not null)
        {
            services.Rooms.Leave(player);
            Log.SessionEnded(services.Logger, player.SessionId, messagesHandled, player.State.LastSeq);
        }

        if (connection is not null)
        {
            services.Registry.Remove(connection);
        }

        context.FireChannelInactive();
    }

    /// <summary>
    /// The peer sent FIN and the transport kept our output open (epoll with half-closure): a running stream is
    /// finished first, then the server answers with Goodbye carrying the frames it received, so the peer can check
    /// that nothing was lost, and closes. (Without this the tail would close at once, cutting the stream.)
    /// </summary>
    public override void UserEventTriggered(IChannelHandlerContext context, object evt)
    {
        if (evt is ChannelInputShutdownEvent && connection is { Phase: ConnectionPhase.Open })
        {
            handshakeTimer?.Cancel();
            if (stream is { Finished: false })
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
        StopPlaying();
        _ = connection!.CloseGracefullyAsync(
            CloseReason.PeerClosed,
            c => player is null ? null : GameConnectionProtocol.CreateGoodbye(CloseReason.PeerClosed, c),
            player is null ? "peer sent FIN before Hello" : "peer sent FIN; answered with Goodbye");
    }

    /// <summary>
    /// Every error on its way to the tail passes here, from the handlers below and from this one: play stops at once
    /// (the close that follows may drain for a while), and a protocol error the session raised is logged as the
    /// game's. The tail decides how the connection ends.
    /// </summary>
    public override void ExceptionCaught(IChannelHandlerContext context, Exception exception)
    {
        if (exception is ProtocolViolationException violation && connection is { Phase: ConnectionPhase.Open })
        {
            Log.ProtocolError(services.Logger, connection.Id, violation.Code, violation.Message);
        }

        StopPlaying();
        context.FireExceptionCaught(exception);
    }

    public override void ChannelWritabilityChanged(IChannelHandlerContext context)
    {
        if (context.Channel.IsWritable)
        {
            stream?.Resume();
        }

        context.FireChannelWritabilityChanged();
    }

    public override void ChannelRead(IChannelHandlerContext context, object message)
    {
        messagesHandled++;
        Handle(context, (IMessage)message);
    }

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
            return;
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
            case Echo echo:
                _ = context.WriteAndFlushAsync(echo);
                break;
            case JoinRoom join:
                JoinRoom(join);
                break;
            case Move move:
                if (!float.IsFinite(move.X) || !float.IsFinite(move.Y))
                {
                    throw new ProtocolViolationException(ProtocolErrorCodes.InvalidArgument, "Move with a non-finite coordinate");
                }

                player.Move(move.Seq, move.X, move.Y);
                break;
            case StreamRequest request:
                StartStream(context, request);
                break;
            case Goodbye goodbye:
                OnClientGoodbye(goodbye);
                break;
            default:
                throw new ProtocolViolationException(
                    ProtocolErrorCodes.UnexpectedMessage, $"{message.GetType().Name} is not sent by clients");
        }
    }

    private void StartSession(IChannelHandlerContext context, Hello hello)
    {
        if (hello.ProtocolVersion != Framing.ProtocolVersion)
        {
            throw new ProtocolViolationException(
                ProtocolErrorCodes.UnsupportedVersion, $"protocol version {hello.ProtocolVersion} is not supported; this server speaks {Framing.ProtocolVersion}");
        }

        if (string.IsNullOrWhiteSpace(hello.PlayerName) || hello.PlayerName.Length > MaxPlayerNameLength)
        {
            throw new ProtocolViolationException(
                ProtocolErrorCodes.InvalidArgument, $"playerName must be 1 to {MaxPlayerNameLength} characters");
        }

        handshakeTimer?.Cancel();
        var sessionId = $"{connection!.Id}-{Guid.NewGuid():N}"[..24];
        player = new PlayerSession(connection, sessionId, hello.PlayerName);
        _ = context.WriteAndFlushAsync(new Welcome(
            sessionId, services.Heartbeat.IntervalMs, services.Time.GetUtcNow().ToUnixTimeMilliseconds()));

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
        Log.SessionStarted(services.Logger, sessionId, hello.PlayerName, connection.Id);
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

    private void StartStream(IChannelHandlerContext context, StreamRequest request)
    {
        // The item's envelope (tag, index, bin header) needs a few bytes beyond the payload.
        var maxPayload = services.Server.MaxFrameBytes - 32;
        if (request.Count < 0 || request.Count > services.Game.MaxStreamCount
            || request.PayloadBytes < 0 || request.PayloadBytes > maxPayload
            || request.IntervalMs < 0 || request.IntervalMs > 60_000)
        {
            throw new ProtocolViolationException(
                ProtocolErrorCodes.InvalidArgument,
                $"StreamRequest needs count 0..{services.Game.MaxStreamCount}, payloadBytes 0..{maxPayload}, intervalMs 0..60000");
        }

        if (stream is { Finished: false })
        {
            throw new ProtocolViolationException(ProtocolErrorCodes.InvalidArgument, "a stream is already running");
        }

        stream = new StreamSender(context, connection!, request);
        stream.Start();
    }

    private void OnClientGoodbye(Goodbye goodbye)
    {
        var state = connection!;
        state.RecordPeerFramesReceived(goodbye.FramesReceived);
        Log.PeerGoodbye(services.Logger, state.Id, goodbye.Reason, goodbye.FramesReceived, state.FramesSent);
        StopPlaying();
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

    private void StopPlaying()
    {
        stream?.Stop();
        if (player is not null)
        {
            services.Rooms.Leave(player);
        }
    }
}
