namespace TcpConnections;

/// <summary>Which direction has been quiet.</summary>
public enum IdleDirection
{
    /// <summary>Nothing was read for the reader idle time.</summary>
    Reader,

    /// <summary>Nothing was written for the writer idle time.</summary>
    Writer,
}

/// <summary>
/// Raised by <see cref="IdleDetector"/> each time a direction has stayed quiet for its idle time.
/// <see cref="Count"/> is 1 for the first period of a quiet spell, 2 for the second, and so on; any traffic in that
/// direction starts a new spell. <see cref="Quiet"/> is how long it has been quiet.
/// </summary>
public sealed record IdleEvent(IdleDirection Direction, int Count, TimeSpan Quiet);
