namespace TcpConnections;

/// <summary>
/// What the close path needs to know about an application protocol, so that the handlers here stay free of any one
/// protocol: which exceptions are the peer's fault, and how to tell the peer before closing.
/// </summary>
public interface IConnectionProtocol
{
    /// <summary>The message sent before closing for a protocol error or a limit; null to send nothing.</summary>
    object? CreateError(string code, string message);

    /// <summary>True when <paramref name="exception"/> means the peer broke the protocol; gives the error to send.</summary>
    bool TryGetProtocolError(Exception exception, out string code, out string message);
}
