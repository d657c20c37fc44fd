namespace GameServer.Connection;

/// <summary>Which direction has been quiet.</summary>
public enum IdleState
{
    /// <summary>Nothing was read for the reader idle time.</summary>
    ReaderIdle,

    /// <summary>Nothing was written for the writer idle time.</summary>
    WriterIdle,
}

/// <summary>
/// Raised by <see cref="IdleStateTimer"/> each time a direction has stayed quiet for its idle time.
/// <see cref="Count"/> is 1 for the first period of a quiet spell, 2 for the second, and so on; any traffic in that
/// direction starts a new spell.
/// </summary>
public sealed record IdleStateEvent(IdleState State, int Count, TimeSpan Quiet);
