using TcpConnections;

namespace GameServer.Options;

/// <summary>The sample game. Section <c>Game</c>.</summary>
public sealed class GameOptions : IValidatedOptions
{
    public const string Section = "Game";

    /// <summary>Room ticks per second; each tick broadcasts one StateUpdate to every member.</summary>
    public int TickRateHz { get; set; } = 20;

    /// <summary>Longest room id a client may ask for.</summary>
    public int MaxRoomIdLength { get; set; } = 64;

    /// <summary>Most StreamItems one StreamRequest may ask for.</summary>
    public int MaxStreamCount { get; set; } = 1_000_000;

    public IEnumerable<string> Validate() =>
        OptionErrors.Range(Section, nameof(TickRateHz), TickRateHz, 1, 1000)
            .Concat(OptionErrors.Range(Section, nameof(MaxRoomIdLength), MaxRoomIdLength, 1, 1024))
            .Concat(OptionErrors.Range(Section, nameof(MaxStreamCount), MaxStreamCount, 0, int.MaxValue));
}
