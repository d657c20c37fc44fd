namespace TcpConnections;

/// <summary>The application heartbeat. Bound from the <c>Heartbeat</c> section.</summary>
public sealed class HeartbeatOptions : IValidatedOptions
{
    public const string Section = "Heartbeat";

    /// <summary>How often a Ping goes out; the server announces it to the client in Welcome.</summary>
    public int IntervalMs { get; set; } = 5000;

    /// <summary>
    /// Intervals without any inbound frame before the peer is declared dead (<c>heartbeat_timeout</c>). Detection
    /// comes Misses intervals after the last frame (the idle check is scheduled for that moment).
    /// </summary>
    public int Misses { get; set; } = 3;

    public TimeSpan Interval => TimeSpan.FromMilliseconds(IntervalMs);

    public IEnumerable<string> Validate() =>
        OptionErrors.Range(Section, nameof(IntervalMs), IntervalMs, 10, 3_600_000)
            .Concat(OptionErrors.Range(Section, nameof(Misses), Misses, 1, 100));
}
