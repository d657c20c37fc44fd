namespace GameProtocol;

/// <summary>The codes an Error frame carries. Stable strings: clients switch on them.</summary>
public static class ProtocolErrorCodes
{
    public const string EmptyFrame = "empty_frame";
    public const string FrameTooLarge = "frame_too_large";
    public const string BadMessage = "bad_message";
    public const string UnknownMessage = "unknown_message";
    public const string UnsupportedVersion = "unsupported_version";
    public const string HelloRequired = "hello_required";
    public const string DuplicateHello = "duplicate_hello";
    public const string UnexpectedMessage = "unexpected_message";
    public const string InvalidArgument = "invalid_argument";
    public const string HandshakeTimeout = "handshake_timeout";
    public const string ServerFull = "server_full";
    public const string RateLimited = "rate_limited";
    public const string UnexpectedPong = "unexpected_pong";
}
