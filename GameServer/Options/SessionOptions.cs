using TcpConnections;

namespace GameServer.Options;

/// <summary>Resumable sessions (protocol version 2). Section <c>Session</c>.</summary>
public sealed class SessionOptions : IValidatedOptions
{
    public const string Section = "Session";

    /// <summary>
    /// How long a version 2 session outlives a connection that the peer's side ended (reset, FIN, broken pipe, timed
    /// out, heartbeat timeout): seat, position, stream and unacknowledged messages are kept for a resume. 0 turns
    /// resume off (version 2 still numbers and acknowledges its messages).
    /// </summary>
    public int ResumeWindowMs { get; set; } = 30_000;

    /// <summary>Most unacknowledged reliable messages kept per session for replay.</summary>
    public int MaxBufferedMessages { get; set; } = 4096;

    /// <summary>Most bytes of unacknowledged reliable messages kept per session for replay.</summary>
    public int MaxBufferedBytes { get; set; } = 1024 * 1024;

    /// <summary>Sessions kept at once without a connection; a drop beyond this ends the session as in version 1.</summary>
    public int MaxDetachedSessions { get; set; } = 10_000;

    /// <summary>
    /// How long the server may hold back its acknowledgement of the client's reliable messages, waiting for a
    /// Reliable of its own to carry it, before it sends an Ack frame.
    /// </summary>
    public int AckDelayMs { get; set; } = 100;

    public TimeSpan ResumeWindow => TimeSpan.FromMilliseconds(ResumeWindowMs);

    public bool ResumeEnabled => ResumeWindowMs > 0;

    public IEnumerable<string> Validate() =>
        OptionErrors.Range(Section, nameof(ResumeWindowMs), ResumeWindowMs, 0, 3_600_000)
            .Concat(OptionErrors.Range(Section, nameof(MaxBufferedMessages), MaxBufferedMessages, 1, 1_000_000))
            .Concat(OptionErrors.Range(Section, nameof(MaxBufferedBytes), MaxBufferedBytes, 1024, 1024 * 1024 * 1024))
            .Concat(OptionErrors.Range(Section, nameof(MaxDetachedSessions), MaxDetachedSessions, 0, 1_000_000))
            .Concat(OptionErrors.Range(Section, nameof(AckDelayMs), AckDelayMs, 1, 10_000));
}
