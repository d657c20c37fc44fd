using DotNetty.Codecs;
using TcpConnections;

namespace GameProtocol.Pipeline;

/// <summary>
/// This game's words for the connection library: its Error frames and codes, and Ping/Pong for the heartbeat.
/// </summary>
public sealed class GameConnectionProtocol : IConnectionProtocol, IHeartbeatProtocol
{
    public static GameConnectionProtocol Instance { get; } = new();

    /// <summary>The Goodbye that ends a graceful close, carrying how many frames this side received.</summary>
    public static Goodbye CreateGoodbye(CloseReason reason, TcpConnection connection) =>
        new(reason.Name, connection.FramesReceived);

    public object? CreateError(string code, string message) => new Error(code, message);

    public object CreatePing(long seq, long sentAtUnixMs) => new Ping(seq, sentAtUnixMs);

    public bool TryReadPong(object message, out long seq)
    {
        seq = message is Pong pong ? pong.Seq : 0;
        return message is Pong;
    }

    public bool TryGetProtocolError(Exception exception, out string code, out string message)
    {
        (code, message) = exception switch
        {
            ProtocolViolationException violation => (violation.Code, violation.Message),
            TooLongFrameException tooLong => (ProtocolErrorCodes.FrameTooLarge, tooLong.Message),
            ProxyProtocolException proxy => (ProtocolErrorCodes.ProxyHeader, proxy.Message),
            CorruptedFrameException corrupted => (ProtocolErrorCodes.EmptyFrame, corrupted.Message),
            _ => (string.Empty, string.Empty),
        };
        return code.Length > 0;
    }
}
