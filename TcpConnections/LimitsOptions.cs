namespace TcpConnections;

/// <summary>
/// Per-connection and per-server limits against floods and storms. Bound from the <c>Limits</c> section. The
/// defaults leave a normal player (20 Moves/s, a Pong, an Echo now and then) far below every limit.
/// </summary>
public sealed class LimitsOptions : IValidatedOptions
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

    public IEnumerable<string> Validate() =>
        OptionErrors.Range(Section, nameof(FramesPerSecond), FramesPerSecond, 1, 10_000_000)
            .Concat(OptionErrors.Range(Section, nameof(FrameBurst), FrameBurst, 1, 10_000_000))
            .Concat(OptionErrors.Range(Section, nameof(BytesPerSecond), BytesPerSecond, 64, int.MaxValue))
            .Concat(OptionErrors.Range(Section, nameof(ByteBurst), ByteBurst, 64, int.MaxValue))
            .Concat(OptionErrors.Range(Section, nameof(MaxConnections), MaxConnections, 1, 10_000_000));
}
