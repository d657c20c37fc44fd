using GameProtocol;
using TcpConnections;

namespace GameClient;

/// <summary>What the client itself observed when its connection ended.</summary>
public sealed record ClientCloseReport(
    CloseReason Reason,
    int Errno,
    string? Detail,
    long FramesReceived,
    long FramesSent,
    Goodbye? ServerGoodbye,
    Error? ServerError)
{
    /// <summary>One line for logs and the bot's output, stable enough to be parsed by tests.</summary>
    public override string ToString() =>
        $"closed reason={Reason.Name} errno={Errno} frames_in={FramesReceived} frames_out={FramesSent} " +
        $"server_goodbye={(ServerGoodbye is null ? "-" : $"{ServerGoodbye.Reason}/{ServerGoodbye.FramesReceived}")} " +
        $"server_error={ServerError?.Code ?? "-"}";
}
