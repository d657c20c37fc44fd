using DotNetty.Codecs;
using GameProtocol;

namespace GameServer.Connection.Codec;

/// <summary>Binds the close path to this project's protocol: Goodbye with the frame count, Error frames, and codes.</summary>
public sealed class GameConnectionProtocol : IConnectionProtocol, IHeartbeatProtocol
{
    public static GameConnectionProtocol Instance { get; } = new();

    public object? CreateGoodbye(CloseReason reason, ConnectionState state) =>
        new Goodbye(reason.ToName(), state.FramesReceived);

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
            CorruptedFrameException corrupted => (ProtocolErrorCodes.EmptyFrame, corrupted.Message),
            _ => (string.Empty, string.Empty),
        };
        return code.Length > 0;
    }
}
