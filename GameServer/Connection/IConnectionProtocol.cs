namespace GameServer.Connection;

/// <summary>
/// What the close path needs to know about the application protocol, so that the handlers in this folder stay
/// free of any one protocol: how to say goodbye, how to report an error, and which exceptions are the peer's fault.
/// </summary>
public interface IConnectionProtocol
{
    /// <summary>The farewell sent before a graceful close (e.g. Goodbye with the count of frames received).</summary>
    object? CreateGoodbye(CloseReason reason, ConnectionState state);

    /// <summary>The message sent before closing for a protocol error or a limit; null to send nothing.</summary>
    object? CreateError(string code, string message);

    /// <summary>True when <paramref name="exception"/> means the peer broke the protocol; gives the error to send.</summary>
    bool TryGetProtocolError(Exception exception, out string code, out string message);
}
