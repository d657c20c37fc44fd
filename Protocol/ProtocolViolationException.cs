namespace GameProtocol;

/// <summary>A peer broke the protocol. <see cref="Code"/> goes into the Error frame sent before the close.</summary>
public sealed class ProtocolViolationException : Exception
{
    public ProtocolViolationException()
        : this(ProtocolErrorCodes.BadMessage, "protocol violation")
    {
    }

    public ProtocolViolationException(string message)
        : this(ProtocolErrorCodes.BadMessage, message)
    {
    }

    public ProtocolViolationException(string message, Exception innerException)
        : this(ProtocolErrorCodes.BadMessage, message, innerException)
    {
    }

    public ProtocolViolationException(string code, string message, Exception? innerException = null)
        : base(message, innerException)
    {
        Code = code;
    }

    /// <summary>The stable machine-readable code sent in <see cref="Error.Code"/>.</summary>
    public string Code { get; } = ProtocolErrorCodes.BadMessage;
}
