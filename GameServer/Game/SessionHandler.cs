using DotNetty.Common.Concurrency;
using DotNetty.Transport.Channels;
using DotNetty.Transport.Channels.Sockets;
using GameProtocol;
using GameServer.Connection;
using GameServer.Connection.Codec;
using GameServer.Hosting;
using GameServer.Options;
using Microsoft.Extensions.Logging;

namespace GameServer.Game;

/// <summary>
/// The session state machine: Hello within the handshake timeout, then the game messages, and the Goodbye
/// handshake. A message that is not allowed in the current state is a protocol error with its own code. Ends
/// connections only through <see cref="ConnectionCloser"/>. One instance per connection.
/// </summary>
public sealed class SessionHandler : ChannelHandlerAdapter
{
    private const int MaxPlayerNameLength = 32;

    private readonly GameServices services;
    private ConnectionState? connection;
    private PlayerSession? player;
    private IScheduledTask? handshakeTimer;
    private StreamSender? stream;
    private long messagesHandled;

    public SessionHandler(GameServices services) => this.services = services;

    public override void ChannelActive(IChannelHandlerContext context)
    {
        connection = ConnectionState.Of(context.Channel);
        services.Registry.Add(connection);
        handshakeTimer = context.Executor.Schedule(
            static (c, s) => ((SessionHandler)s!).OnHandshakeTimeout((IChannelHandlerContext)c!),
            context,
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
            GameLog.SessionEnded(services.Logger, player.SessionId, messagesHandled, player.State.LastSeq);
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
    /// that nothing was lost, and closes.
    /// </summary>
    public override void UserEventTriggered(IChannelHandlerContext context, object evt)
    {
        if (evt is ChannelInputShutdownEvent && connection is { Phase: ConnectionPhase.Open })
        {
            handshakeTimer?.Cancel();
            if (stream is { Finished: false })
            {
                stream.OnFinished = () => AnswerFin(context);
            }
            else
            {
                AnswerFin(context);
            }
        }

        context.FireUserEventTriggered(evt);
    }

    private void AnswerFin(IChannelHandlerContext context)
    {
        StopPlaying();
        _ = ConnectionCloser.CloseGracefullyAsync(
            context.Channel,
            CloseReason.PeerClosed,
            s => player is null ? null : new Goodbye(CloseReason.PeerClosed.ToName(), s.FramesReceived),
            player is null ? "peer sent FIN before Hello" : "peer sent FIN; answered with Goodbye");
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
        try
        {
            messagesHandled++;
            Handle(context, (IMessage)message);
        }
        catch (ProtocolViolationException violation)
        {
            CloseForProtocolError(context, violation.Code, violation.Message);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // Sent from the head so the close path (CloseClassifier) judges it like any other failure.
            context.Channel.Pipeline.FireExceptionCaught(ex);
        }
    }

    private void Handle(IChannelHandlerContext context, IMessage message)
    {
        var state = connection!;
        if (state.Phase != ConnectionPhase.Open)
        {
            // Draining after our own Goodbye: only the peer's answering Goodbye still matters.
            if (message is Goodbye answer)
            {
                state.PeerFramesReceived = answer.FramesReceived;
                GameLog.PeerGoodbye(services.Logger, state.Id, answer.Reason, answer.FramesReceived, state.FramesSent);
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
                OnClientGoodbye(context, goodbye);
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
                logger: services.ConnectionLogger));
        GameLog.SessionStarted(services.Logger, sessionId, hello.PlayerName, connection.Id);
    }

    private void JoinRoom(JoinRoom join)
    {
        if (string.IsNullOrWhiteSpace(join.RoomId) || join.RoomId.Length > services.Game.MaxRoomIdLength)
        {
            throw new ProtocolViolationException(
                ProtocolErrorCodes.InvalidArgument, $"roomId must be 1 to {services.Game.MaxRoomIdLength} characters");
        }

        services.Rooms.Join(player!, join.RoomId);
        GameLog.JoinedRoom(services.Logger, player!.SessionId, join.RoomId);
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

    private void OnClientGoodbye(IChannelHandlerContext context, Goodbye goodbye)
    {
        var state = connection!;
        state.PeerFramesReceived = goodbye.FramesReceived;
        GameLog.PeerGoodbye(services.Logger, state.Id, goodbye.Reason, goodbye.FramesReceived, state.FramesSent);
        StopPlaying();
        _ = ConnectionCloser.CloseGracefullyAsync(
            context.Channel,
            CloseReason.ClientGoodbye,
            s => new Goodbye(CloseReason.ClientGoodbye.ToName(), s.FramesReceived),
            $"peer said '{goodbye.Reason}'");
    }

    private void OnHandshakeTimeout(IChannelHandlerContext context)
    {
        if (player is null && connection is { Phase: ConnectionPhase.Open })
        {
            var text = $"no Hello within {services.Server.HandshakeTimeoutMs} ms";
            _ = ConnectionCloser.CloseGracefullyAsync(
                context.Channel, CloseReason.HandshakeTimeout, _ => new Error(ProtocolErrorCodes.HandshakeTimeout, text), text);
        }
    }

    private void CloseForProtocolError(IChannelHandlerContext context, string code, string text)
    {
        GameLog.ProtocolError(services.Logger, connection!.Id, code, text);
        StopPlaying();
        _ = ConnectionCloser.CloseGracefullyAsync(
            context.Channel, CloseReason.ProtocolError, _ => new Error(code, text), $"{code}: {text}");
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
