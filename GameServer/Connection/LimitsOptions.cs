namespace GameServer.Connection;

/// <summary>
/// Per-connection and per-server limits against floods and storms. Bound from the <c>Limits</c> section. The
/// defaults leave a normal player (20 Moves/s, a Pong, an Echo now and then) far below every limit.
/// </summary>
public sealed class LimitsOptions
{
    public const string Section = "Limits";

    /// <summary>Sustained frames per second a peer may send.</summary>
    public int FramesPerSecond { get; set; } = 200;

    /// <summary>Frames a peer may send at once above the sustained rate (the bucket's size).</summary>
    public int FrameBurst { get; set; } = 400;

    /// <summary>Sustained bytes per second a peer may send (frame headers included).</summary>
    public int BytesPerSecond { get; set; } = 256 * 1024;

    /// <summary>Bytes a peer may send at once above the sustained rate.</summary>
    public int ByteBurst { get; set; } = 512 * 1024;

    /// <summary>
    /// Open connections the server accepts; one more gets Error("server_full") and a graceful close. Keep it below
    /// the process's open-file limit, or the kernel refuses before the server can say why.
    /// </summary>
    public int MaxConnections { get; set; } = 10_000;

    public IEnumerable<string> Validate()
    {
        foreach (var (key, value, min, max) in new (string, int, int, int)[]
        {
            (nameof(FramesPerSecond), FramesPerSecond, 1, 10_000_000),
            (nameof(FrameBurst), FrameBurst, 1, 10_000_000),
            (nameof(BytesPerSecond), BytesPerSecond, 64, int.MaxValue),
            (nameof(ByteBurst), ByteBurst, 64, int.MaxValue),
            (nameof(MaxConnections), MaxConnections, 1, 10_000_000),
        })
        {
            if (value < min || value > max)
            {
                yield return $"{Section}:{key} = '{value}' is invalid: expected a number from {min} to {max}";
            }
        }
    }
}
