namespace TcpConnections;

/// <summary>
/// Kernel-level dead-peer detection. Keepalive finds a dead peer on an idle connection (no data either way);
/// TCP_USER_TIMEOUT, when turned on, finds one while we are sending (unacknowledged data), where keepalive never
/// starts. Bound from the <c>Tcp</c> section.
/// </summary>
public sealed class TcpTimeoutOptions : IValidatedOptions
{
    public const string Section = "Tcp";

    /// <summary>Idle time before the first keepalive probe; 0 turns keepalive off.</summary>
    public int KeepAliveTimeSeconds { get; set; } = 15;

    /// <summary>Time between unanswered probes.</summary>
    public int KeepAliveIntervalSeconds { get; set; } = 5;

    /// <summary>Unanswered probes before the kernel reports ETIMEDOUT. Detection ≈ time + interval × count.</summary>
    public int KeepAliveRetryCount { get; set; } = 3;

    /// <summary>
    /// How long sent data may stay unacknowledged before the kernel drops the connection with ETIMEDOUT
    /// (TCP_USER_TIMEOUT, Linux only); 0, the default, leaves it off (the kernel's retransmission limit, about 15
    /// minutes, applies). Off because Linux applies it to zero-window probing too and never restarts that clock while
    /// a small receive window reopens only partly: any value ends a live reader with a small window that stalls now and
    /// then, about this long after its first stall, however much it reads (KernelUserTimeoutTests). The heartbeat finds
    /// dead peers we send to instead (docs/CLOSE-HANDLING.md, "Dead peers"). Turning it on trades such readers for
    /// finding a dead peer we send to within this time, without the heartbeat.
    /// </summary>
    public int UserTimeoutMs { get; set; }

    public IEnumerable<string> Validate() =>
        OptionErrors.Range(Section, nameof(KeepAliveTimeSeconds), KeepAliveTimeSeconds, 0, 32767)
            .Concat(OptionErrors.Range(Section, nameof(KeepAliveIntervalSeconds), KeepAliveIntervalSeconds, 1, 32767))
            .Concat(OptionErrors.Range(Section, nameof(KeepAliveRetryCount), KeepAliveRetryCount, 1, 127))
            .Concat(OptionErrors.Range(Section, nameof(UserTimeoutMs), UserTimeoutMs, 0, 3_600_000));
}
