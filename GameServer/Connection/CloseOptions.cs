namespace GameServer.Connection;

/// <summary>How connections are closed. Bound from the <c>Server</c> section.</summary>
public sealed class CloseOptions
{
    /// <summary>
    /// How long a graceful close keeps reading (and discarding) after shutting down its write side, waiting for the
    /// peer's FIN. Closing earlier with unread data turns the FIN into an RST that can overtake data in flight.
    /// </summary>
    public int DrainTimeoutMs { get; set; } = 5000;
}
