using System.Net.Sockets;
using DotNetty.Buffers;
using DotNetty.Common.Utilities;
using DotNetty.Transport.Channels;
using DotNetty.Transport.Channels.Sockets;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace TcpConnections;

/// <summary>
/// The head of a connection's pipeline: first in it, so every event from the transport reaches it first and every
/// write reaches the transport through it. It makes the channel's <see cref="TcpConnection"/> and reports to it what
/// only the transport knows: bytes each way, a write that failed (EPIPE and write-side resets only fail the write's
/// task), the peer's FIN on a half-closing transport, a close asked for through the pipeline, and the end. When the
/// channel goes inactive it writes the one close line, updates the metrics and raises
/// <see cref="ConnectionClosedEvent"/>. Exceptions are the <see cref="ConnectionTailHandler"/>'s, last in the pipeline.
/// Stateless across channels: share one instance.
/// </summary>
public sealed class ConnectionHandler : ChannelDuplexHandler
{
    private readonly TimeSpan drainTimeout;
    private readonly IConnectionMetrics metrics;
    private readonly ILogger logger;

    public ConnectionHandler(ConnectionOptions? options = null, ILogger? logger = null, IConnectionMetrics? metrics = null)
    {
        drainTimeout = (options ?? new ConnectionOptions()).ThrowIfInvalid().DrainTimeout;
        this.metrics = metrics ?? ConnectionMetrics.None;
        this.logger = logger ?? NullLogger.Instance;
    }

    public override bool IsSharable => true;

    public override void HandlerAdded(IChannelHandlerContext context) => TcpConnection.Attach(context.Channel, drainTimeout);

    public override void ChannelActive(IChannelHandlerContext context)
    {
        var connection = TcpConnection.Of(context.Channel);
        connection.OnActive();
        metrics.Opened();
        if (logger.IsEnabled(LogLevel.Debug))
        {
            using (logger.BeginScope(connection.Id))
            {
                ConnectionLog.Opened(logger, connection.Id, connection.RemoteEndPoint);
            }
        }

        context.FireChannelActive();
    }

    public override void ChannelRead(IChannelHandlerContext context, object message)
    {
        var connection = TcpConnection.Of(context.Channel);

        // Nothing may act on a connection that has already closed out. Bytes that arrived before the peer's FIN still
        // pass, even while the transport is closing: a peer that closes normally is owed the processing of everything
        // it sent.
        if (connection.Phase == ConnectionPhase.Closed)
        {
            ReferenceCountUtil.Release(message);
            return;
        }

        if (message is IByteBuffer buffer)
        {
            connection.CountBytesReceived(buffer.ReadableBytes);
        }

        context.FireChannelRead(message);
    }

    public override void ChannelReadComplete(IChannelHandlerContext context)
    {
        // The decoders above have counted this read's frames by now: report it once, not per frame.
        ReportReceived(TcpConnection.Of(context.Channel));
        context.FireChannelReadComplete();
    }

    public override Task WriteAsync(IChannelHandlerContext context, object message)
    {
        if (message is IByteBuffer buffer)
        {
            TcpConnection.Of(context.Channel).CountBytesSent(buffer.ReadableBytes);
        }

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

    public override void Flush(IChannelHandlerContext context)
    {
        ReportSent(TcpConnection.Of(context.Channel));
        context.Flush();
    }

    /// <summary>
    /// A transport with half-closure (Transport.Epoll with <c>AllowHalfClosure</c>) reports the peer's FIN as
    /// <see cref="ChannelInputShutdownEvent"/> and leaves our output open. While this side is closing it is what the
    /// drain waited for; otherwise it goes on to the application, which decides what to say before closing (the
    /// tail closes gracefully if nothing does).
    /// </summary>
    public override void UserEventTriggered(IChannelHandlerContext context, object evt)
    {
        if (evt is ChannelInputShutdownEvent && TcpConnection.Of(context.Channel).OnInputShutdown())
        {
            return;
        }

        context.FireUserEventTriggered(evt);
    }

    public override Task CloseAsync(IChannelHandlerContext context)
    {
        TcpConnection.Of(context.Channel).OnCloseRequested();
        return context.CloseAsync();
    }

    public override void ChannelInactive(IChannelHandlerContext context)
    {
        var connection = TcpConnection.Of(context.Channel);
        var evt = connection.OnInactive();

        // The record is raised and the task completed even if a user's metrics or logger throws: the session above
        // must still leave and whoever awaits Closed must still wake.
        try
        {
            ReportReceived(connection);
            ReportSent(connection);
            metrics.Closed(evt);
            using (logger.BeginScope(connection.Id))
            {
                if (evt.Reason.IsServerFault)
                {
                    ConnectionLog.ClosedByFault(logger, evt.ConnectionId, evt.RemoteEndPoint, evt.ReasonName, evt.Detail);
                }
                else if (logger.IsEnabled(LogLevel.Information))
                {
                    var errno = CloseReason.DescribeErrno(evt.Errno);
                    ConnectionLog.Closed(
                        logger, evt.ConnectionId, evt.RemoteEndPoint, evt.ReasonName, errno,
                        (long)evt.Duration.TotalMilliseconds, evt.FramesReceived, evt.FramesSent, evt.BytesReceived,
                        evt.BytesSent, evt.Detail ?? "-");
                }
            }
        }
        finally
        {
            try
            {
                context.FireUserEventTriggered(evt);
            }
            finally
            {
                connection.Complete(evt);
                context.FireChannelInactive();
            }
        }
    }

    private void ReportReceived(TcpConnection connection)
    {
        var (frames, bytes) = connection.TakeUnreportedReceived();
        if (frames != 0 || bytes != 0)
        {
            metrics.Received(frames, bytes);
        }
    }

    private void ReportSent(TcpConnection connection)
    {
        var (frames, bytes) = connection.TakeUnreportedSent();
        if (frames != 0 || bytes != 0)
        {
            metrics.Sent(frames, bytes);
        }
    }

    private static void ObserveWrite(Task task, object? channelObject)
    {
        var channel = (IChannel)channelObject!;

        // The first failed write carries the SocketException as its inner cause; later ones are a bare
        // ClosedChannelException and add nothing. DotNetty fails the write but leaves closing to the read side, which a
        // peer with reads paused never reaches: the connection closes here.
        if (SocketErrors.Find(task.Exception) is { } socketException)
        {
            SocketErrors.Close(TcpConnection.Of(channel), socketException, onWrite: true);
        }
    }
}

/// <summary>Tiny predicates over the exceptions transports raise.</summary>
internal static class SocketErrors
{
    /// <summary>The socket error inside an exception, through wrappers and single-item aggregates.</summary>
    public static SocketException? Find(Exception? exception)
    {
        for (var e = exception; e is not null; e = e.InnerException)
        {
            if (e is SocketException socketException)
            {
                return socketException;
            }

            if (e is AggregateException aggregate && aggregate.InnerExceptions.Count == 1)
            {
                return Find(aggregate.InnerExceptions[0]);
            }
        }

        return null;
    }

    /// <summary>The exact errno where the transport kept it (<see cref="IErrnoException"/>), else what .NET rebuilt.</summary>
    public static int ErrnoOf(SocketException exception) =>
        exception is IErrnoException exact ? exact.Errno : exception.NativeErrorCode;

    /// <summary>
    /// Ends <paramref name="connection"/> for a socket error, named as a write's or a read's: an error with no close
    /// reason of its own is <c>broken_pipe</c> on a write and <c>peer_reset</c> on a read.
    /// </summary>
    public static void Close(TcpConnection connection, SocketException exception, bool onWrite)
    {
        var reason = CloseReason.FromSocketError(exception.SocketErrorCode, onWrite) ?? (onWrite ? CloseReason.BrokenPipe : CloseReason.PeerReset);
        connection.OnSocketError(reason, ErrnoOf(exception), exception.SocketErrorCode.ToString());
    }
}
