using GameProtocol;

namespace GameClient;

/// <summary>The client could not connect or the server refused the session.</summary>
public sealed class GameClientException : Exception
{
    public GameClientException()
    {
    }

    public GameClientException(string message)
        : base(message)
    {
    }

    public GameClientException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    /// <summary>The server's Error, when the server refused (its code says why).</summary>
    public Error? Error { get; init; }
}
