using DotNetty.Codecs;
using DotNetty.Transport.Channels;
using DotNetty.Transport.Channels.Sockets;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace TcpConnections;

/// <summary>
/// The last handler of a connection's pipeline. Whatever any handler throws, and every error the transport raises,
/// travels toward the tail and ends here, in the one close path: no handler needs to catch and re-fire. It judges:
/// a socket error is the reason it maps to (<see cref="CloseReason.FromSocketError"/>, the exact errno where the
/// transport keeps it); a protocol error (<see cref="IConnectionProtocol.TryGetProtocolError"/>, or, with no protocol
/// given, any <see cref="DecoderException"/>) closes gracefully with the protocol's error message first; anything else is
/// <see cref="CloseReason.InternalError"/>: logged once with its stack trace, and the connection aborted. It is also
/// the default policy for the peer's FIN on a half-closing transport when no handler above took it: a graceful close
/// as <see cref="CloseReason.PeerClosed"/>. Stateless across channels: share one instance.
/// </summary>
public sealed class ConnectionTailHandler : ChannelHandlerAdapter
{
    private readonly IConnectionProtocol? protocol;
    private readonly ILogger logger;

    public ConnectionTailHandler(IConnectionProtocol? protocol = null, ILogger? logger = null)
    {
        this.protocol = protocol;
        this.logger = logger ?? NullLogger.Instance;
    }

    public override bool IsSharable => true;

    public override void ExceptionCaught(IChannelHandlerContext context, Exception exception)
    {
        var connection = TcpConnection.Of(context.Channel);
        if (SocketErrors.Find(exception) is { } socketException)
        {
            // Read errors mostly; a transport that raises a failed send here too marks it (IErrnoException.OnWrite).
            SocketErrors.Close(connection, socketException, onWrite: socketException is IErrnoException { OnWrite: true });
            return;
        }

        if (TryGetProtocolError(exception, out var code, out var text))
        {
            // Bytes after a bad frame mean nothing (the frame decoder discards them); the drain only waits for the FIN.
            if (connection.Phase == ConnectionPhase.Open && context.Channel.Active)
            {
                _ = connection.CloseGracefullyAsync(
                    CloseReason.ProtocolError,
                    _ => protocol?.CreateError(code, text),
                    code.Length == 0 ? text : $"{code}: {text}");
            }

            return;
        }

        if (connection.Phase != ConnectionPhase.Open || !context.Channel.Active)
        {
            // Late noise from a connection that is already ending (e.g. a read aborted by our own reset).
            if (logger.IsEnabled(LogLevel.Debug))
            {
                var type = exception.GetType().Name;
                ConnectionLog.LateException(logger, connection.Id, type, exception.Message);
            }

            return;
        }

        // Logged whether or not it becomes the close reason: a reason recorded earlier (a goodbye under way) must not
        // hide a fault of ours.
        using (logger.BeginScope(connection.Id))
        {
            ConnectionLog.HandlerFault(logger, exception, connection.Id);
        }

        _ = connection.AbortAsync(CloseReason.InternalError, exception.Message);
    }

    public override void UserEventTriggered(IChannelHandlerContext context, object evt)
    {
        if (evt is ChannelInputShutdownEvent)
        {
            // Nothing above answered the peer's FIN: everything it sent has been handled, so flush what is queued for
            // it and close our direction too.
            _ = TcpConnection.Of(context.Channel).CloseGracefullyAsync(CloseReason.PeerClosed);
        }
    }

    private bool TryGetProtocolError(Exception exception, out string code, out string text)
    {
        var cause = exception is DecoderException { InnerException: { } inner } ? inner : exception;
        if (protocol is not null && protocol.TryGetProtocolError(cause, out code, out text))
        {
            return true;
        }

        // Without a protocol to judge, a decoder's exception (FrameDecoder: a length of 0 or over the limit) is the
        // peer's; with one, what it does not recognise is a fault of ours, a decoder bug, not the peer's doing.
        code = string.Empty;
        text = cause.Message;
        return protocol is null && exception is DecoderException;
    }
}
