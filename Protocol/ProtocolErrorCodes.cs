namespace GameProtocol;

/// <summary>The codes an Error frame carries. Stable strings: clients switch on them.</summary>
public static class ProtocolErrorCodes
{
    public const string EmptyFrame = "empty_frame";

    /// <summary>Behind a load balancer (<c>Server:ProxyProtocol</c>): the connection did not begin with a good PROXY protocol header.</summary>
    public const string ProxyHeader = "proxy_header";
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

    /// <summary>Version 2: a reliable message out of sequence (a gap), sent bare, or an ack of more than was sent.</summary>
    public const string BadSequence = "bad_sequence";

    /// <summary>Resume refused: the server never issued this token, or has forgotten it.</summary>
    public const string ResumeUnknown = "resume_unknown";

    /// <summary>Resume refused: the session was kept for the window and expired unresumed.</summary>
    public const string ResumeExpired = "resume_expired";

    /// <summary>Resume refused: a resume already used this token (each resume gets a new one).</summary>
    public const string ResumeTokenUsed = "resume_token_used";

    /// <summary>Resume refused: the session ended for good (Goodbye, protocol error, kick, shutdown).</summary>
    public const string ResumeEnded = "resume_ended";

    /// <summary>Resume refused: messages the client has not received are no longer buffered.</summary>
    public const string ResumeGap = "resume_gap";
}
