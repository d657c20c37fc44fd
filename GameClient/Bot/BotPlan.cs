namespace GameClient.Bot;

/// <summary>What one bot run does, in order: connect, join, move, echo, stream, then close in one mode.</summary>
public sealed class BotPlan
{
    public required GameClientOptions Client { get; init; }

    public string? Room { get; init; }

    public int Moves { get; init; }

    public int MoveIntervalMs { get; init; }

    public int Echoes { get; init; }

    public int StreamCount { get; init; }

    public int StreamPayloadBytes { get; init; }

    public int StreamIntervalMs { get; init; }

    public int WaitStreamItems { get; init; }

    public bool StopReading { get; init; }

    public bool Flood { get; init; }

    public int HoldMs { get; init; }

    public ClientCloseMode Close { get; init; }

    public bool Quiet { get; init; }

    /// <summary>Play a protocol version 2 session that reconnects and resumes after a drop (<see cref="GameSession"/>).</summary>
    public bool Resume { get; init; }
}
