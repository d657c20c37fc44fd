namespace TcpConnections;

/// <summary>How the heartbeat speaks the application protocol: build a Ping, recognise the Pong that answers it.</summary>
public interface IHeartbeatProtocol
{
    object CreatePing(long seq, long sentAtUnixMs);

    bool TryReadPong(object message, out long seq);
}
