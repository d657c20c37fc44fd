namespace GameServer.Options;

/// <summary>The application heartbeat. Section <c>Heartbeat</c>.</summary>
public sealed class HeartbeatOptions : IValidatedOptions
{
    public const string Section = "Heartbeat";

    /// <summary>How often each side pings; announced to the client in Welcome.</summary>
    public int IntervalMs { get; set; } = 5000;

    public IEnumerable<string> Validate() => OptionErrors.Range(Section, nameof(IntervalMs), IntervalMs, 10, 3_600_000);
}
