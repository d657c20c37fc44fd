using System.Net.Sockets;
using DotNetty.Codecs;
using DotNetty.Common.Utilities;
using DotNetty.Transport.Channels;
using DotNetty.Transport.Channels.Sockets;
using Microsoft.Extensions.Logging;
using Transport.Epoll;

namespace GameServer.Connection;

/// <summary>
/// The one place that decides how a connection ended. It watches the three ways DotNetty's socket transport reports
/// an end: read errors reach <c>ExceptionCaught</c>; write errors (EPIPE, write-side resets) only fail the write's
/// task, so every write is observed here; end of stream is a bare <c>ChannelInactive</c>, or, on a transport that can
/// half-close, a <see cref="ChannelInputShutdownEvent"/>. The first cause wins.
/// When the channel goes inactive it writes one log line, updates the metrics and raises
/// <see cref="ConnectionClosedEvent"/> through the pipeline.
/// </summary>
/// <remarks>
/// Place it above the codecs so it sees their exceptions, and below the application handlers so their writes pass
/// through it. It is stateless across channels and may be shared.
/// </remarks>
public sealed class CloseClassifier : ChannelDuplexHandler
{
    private readonly CloseOptions options;
    private readonly IConnectionProtocol protocol;
    private readonly ConnectionMetrics metrics;
    private readonly ILogger logger;

    public CloseClassifier(CloseOptions options, IConnectionProtocol protocol, ConnectionMetrics metrics, ILogger logger)
    {
        this.options = options;
        this.protocol = protocol;
        this.metrics = metrics;
        this.logger = logger;
    }

    public override bool IsSharable => true;

    public override void ChannelActive(IChannelHandlerContext context)
    {
        var state = ConnectionState.Of(context.Channel);
        state.DrainTimeout = TimeSpan.FromMilliseconds(options.DrainTimeoutMs);
        metrics.Opened();
        using (logger.BeginScope(state.Id))
        {
            ConnectionLog.Opened(logger, state.Id, state.RemoteEndPoint);
        }

        context.FireChannelActive();
    }

    public override void ChannelRead(IChannelHandlerContext context, object message)
    {
        // Nothing may act on a connection this classifier has already closed out. Frames that arrived before the
        // peer's FIN still pass, even while the transport is closing: a peer that closes normally is owed the
        // processing of everything it sent (case S2).
        if (ConnectionState.Of(context.Channel).Phase == ConnectionPhase.Closed)
        {
            ReferenceCountUtil.Release(message);
            return;
        }

        context.FireChannelRead(message);
    }

    public override void ExceptionCaught(IChannelHandlerContext context, Exception exception)
    {
        var state = ConnectionState.Of(context.Channel);
        if (FindSocketException(exception) is { } socketException)
        {
            var reason = CloseReasons.FromSocketError(socketException.SocketErrorCode, onWrite: false) ?? CloseReason.PeerReset;
            state.TrySetReason(reason, ErrnoOf(socketException), socketException.SocketErrorCode.ToString());
            ConnectionCloser.CloseQuietly(context.Channel); // DotNetty closes on read errors too; this makes sure.
            return;
        }

        if (protocol.TryGetProtocolError(Unwrap(exception), out var code, out var text))
        {
            // Stop decoding at once: bytes after a bad frame mean nothing.
            if (state.Phase == ConnectionPhase.Open && context.Channel.Active)
            {
                _ = ConnectionCloser.CloseGracefullyAsync(
                    context.Channel, CloseReason.ProtocolError, _ => protocol.CreateError(code, text), $"{code}: {text}");
            }

            return;
        }

        if (state.Phase != ConnectionPhase.Open || !context.Channel.Active)
        {
            // Late noise from a connection that is already ending (e.g. a read aborted by our own reset).
            if (logger.IsEnabled(LogLevel.Debug))
            {
                var type = exception.GetType().Name;
                ConnectionLog.LateException(logger, state.Id, type, exception.Message);
            }

            return;
        }

        if (state.TrySetReason(CloseReason.InternalError, 0, exception.Message))
        {
            using (logger.BeginScope(state.Id))
            {
                ConnectionLog.HandlerFault(logger, exception, state.Id);
            }
        }

        _ = ConnectionCloser.AbortAsync(context.Channel, CloseReason.InternalError);
    }

    public override Task WriteAsync(IChannelHandlerContext context, object message)
    {
        var task = context.WriteAsync(message);
        if (!task.IsCompleted)
        {
            task.ContinueWith(
                ObserveWrite,
                context.Channel,
                CancellationToken.None,
                TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously,
                TaskScheduler.Default);
        }
        else if (task.IsFaulted)
        {
            ObserveWrite(task, context.Channel);
        }

        return task;
    }

    /// <summary>
    /// A transport with half-closure (the epoll one, with <c>AllowHalfClosure</c>) reports the peer's FIN as
    /// <see cref="ChannelInputShutdownEvent"/> and leaves the output open. While draining our own graceful close it
    /// is what the drain waited for, so the close happens now. Otherwise the application above decides what to say
    /// before closing.
    /// </summary>
    public override void UserEventTriggered(IChannelHandlerContext context, object evt)
    {
        if (evt is ChannelInputShutdownEvent)
        {
            // No reason is recorded yet: what the server does with its open output may still fail (a write into the
            // peer's RST is broken_pipe); if nothing does, the close is peer_closed as with any EOF.
            var state = ConnectionState.Of(context.Channel);
            if (state.Phase != ConnectionPhase.Open)
            {
                state.DrainTimer?.Cancel();
                ConnectionCloser.CloseQuietly(context.Channel);
                return;
            }
        }

        context.FireUserEventTriggered(evt);
    }

    public override Task CloseAsync(IChannelHandlerContext context)
    {
        // A close asked for through the pipeline without a recorded reason is still the server's decision.
        ConnectionState.Of(context.Channel).TrySetReason(CloseReason.LocalClose);
        return context.CloseAsync();
    }

    public override void ChannelInactive(IChannelHandlerContext context)
    {
        var state = ConnectionState.Of(context.Channel);
        state.DrainTimer?.Cancel();

        // Nothing else explained the end: the transport saw end of stream (FIN). On DotNetty's stock transport an
        // RST can read as a plain EOF too: after a FIN, or when a blocked send met the RST's error first (the kernel
        // reports it once).
        state.TrySetReason(CloseReason.PeerClosed);

        var evt = new ConnectionClosedEvent(
            state.Id,
            state.RemoteEndPoint,
            state.Reason!.Value,
            state.Errno,
            state.Detail,
            state.Age,
            state.FramesReceived,
            state.FramesSent,
            state.BytesReceived,
            state.BytesSent,
            state.PeerFramesReceived);

        metrics.Closed(evt);
        using (logger.BeginScope(state.Id))
        {
            if (evt.Reason.IsServerFault())
            {
                ConnectionLog.ClosedByFault(logger, evt.ConnectionId, evt.RemoteEndPoint, evt.ReasonName, evt.Detail);
            }
            else if (logger.IsEnabled(LogLevel.Information))
            {
                var errno = CloseReasons.DescribeErrno(evt.Errno);
                ConnectionLog.Closed(
                    logger, evt.ConnectionId, evt.RemoteEndPoint, evt.ReasonName, errno,
                    (long)evt.Duration.TotalMilliseconds, evt.FramesReceived, evt.FramesSent, evt.BytesReceived,
                    evt.BytesSent, evt.Detail ?? "-");
            }
        }

        context.FireUserEventTriggered(evt);
        state.Complete(evt);
        context.FireChannelInactive();
    }

    private static void ObserveWrite(Task task, object? channelObject)
    {
        var channel = (IChannel)channelObject!;

        // The first failed write carries the SocketException as its inner cause; later ones are a bare
        // ClosedChannelException and add nothing.
        if (FindSocketException(task.Exception) is { } socketException)
        {
            var reason = CloseReasons.FromSocketError(socketException.SocketErrorCode, onWrite: true) ?? CloseReason.BrokenPipe;
            ConnectionState.Of(channel).TrySetReason(reason, ErrnoOf(socketException), socketException.SocketErrorCode.ToString());

            // DotNetty fails the write but leaves closing to the read side, which a peer with reads paused never
            // reaches: close here.
            ConnectionCloser.CloseQuietly(channel);
        }
    }

    // .NET rebuilds NativeErrorCode from the SocketError, which loses a few errnos; the epoll transport keeps the real one.
    private static int ErrnoOf(SocketException exception) =>
        exception is EpollSocketException epoll ? epoll.Errno : exception.NativeErrorCode;

    private static SocketException? FindSocketException(Exception? exception)
    {
        for (var e = exception; e is not null; e = e.InnerException)
        {
            if (e is SocketException socketException)
            {
                return socketException;
            }

            if (e is AggregateException aggregate && aggregate.InnerExceptions.Count == 1)
            {
                return FindSocketException(aggregate.InnerExceptions[0]);
            }
        }

        return null;
    }

    private static Exception Unwrap(Exception exception) =>
        exception is DecoderException { InnerException: { } inner } ? inner : exception;
}
