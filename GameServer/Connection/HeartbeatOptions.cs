namespace GameServer.Connection;

/// <summary>The application heartbeat. Bound from the <c>Heartbeat</c> section.</summary>
public sealed class HeartbeatOptions
{
    public const string Section = "Heartbeat";

    /// <summary>How often a Ping goes out; the server announces it to the client in Welcome.</summary>
    public int IntervalMs { get; set; } = 5000;

    /// <summary>
    /// Intervals without any inbound frame before the peer is declared dead (<c>heartbeat_timeout</c>). Detection
    /// takes between Misses and Misses + 1 intervals after the last frame.
    /// </summary>
    public int Misses { get; set; } = 3;

    public TimeSpan Interval => TimeSpan.FromMilliseconds(IntervalMs);

    public IEnumerable<string> Validate()
    {
        if (IntervalMs is < 10 or > 3_600_000)
        {
            yield return $"{Section}:{nameof(IntervalMs)} = '{IntervalMs}' is invalid: expected a number from 10 to 3600000";
        }

        if (Misses is < 1 or > 100)
        {
            yield return $"{Section}:{nameof(Misses)} = '{Misses}' is invalid: expected a number from 1 to 100";
        }
    }
}
