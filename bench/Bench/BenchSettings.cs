using System.Globalization;

namespace Bench;

/// <summary>What one benchmark run measures; defaults are the ones docs/PERFORMANCE.md was made with.</summary>
internal sealed record BenchSettings
{
    public int Rounds { get; init; } = 3;

    public int Seconds { get; init; } = 5;

    public int WarmUpSeconds { get; init; } = 2;

    public IReadOnlyList<int> Connections { get; init; } = [64, 1000];

    /// <summary>Idle connections to open for the memory-per-connection figure (one client process holds them).</summary>
    public int Idle { get; init; } = 15_000;

    /// <summary>Connections opened and closed per close mode and server.</summary>
    public int Churn { get; init; } = 100_000;

    /// <summary>
    /// Players per fan-out step, ascending; a server's steps stop after the first whose lateness p99 missed a tick.
    /// 4,500 sits where this machine's ceiling is (4,000 to 5,000 players), so 0.9× of a C server that holds 5,000 is
    /// a step that can be measured, not rounded down to 0.8×.
    /// </summary>
    public IReadOnlyList<int> FanoutPlayers { get; init; } = [1_000, 2_000, 3_000, 4_000, 4_500, 5_000, 10_000, 15_000];

    /// <summary>Room sizes the fan-out steps run with.</summary>
    public IReadOnlyList<int> FanoutRoomSizes { get; init; } = [8, 64];

    /// <summary>
    /// Seconds measured per fan-out step, after the warm-up: 200 ticks, so that the p99 is not decided by the single
    /// worst tick (in 100, one late tick is 1 % of the updates: one stall of the host, or one collection, would be the
    /// verdict for the C server as for the game). Stalls still show, in p99.9 and max.
    /// </summary>
    public int FanoutSeconds { get; init; } = 10;

    /// <summary>
    /// Seconds of steady load before a fan-out step is measured, counted from every player's first update: each step
    /// starts a fresh server, whose JIT is still tiering up for the first seconds (measured at 3,000 players on epoll:
    /// 12.5 CPU-µs per update after 2 s, 8.1 after 6 s). A long-running server pays that once.
    /// </summary>
    public int FanoutWarmUpSeconds { get; init; } = 6;

    /// <summary>Which parts run: "echo" (echo, idle, churn), "fanout", or both.</summary>
    public IReadOnlySet<string> Sections { get; init; } = new HashSet<string>(StringComparer.Ordinal) { "echo", "fanout" };

    /// <summary>Only these servers (by name), or all.</summary>
    public IReadOnlyList<string>? Only { get; init; }

    public string? Out { get; init; }

    public static BenchSettings Parse(string[] args)
    {
        var settings = new BenchSettings();
        var named = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            int NextInt(int min) => int.Parse(Next(), CultureInfo.InvariantCulture) is var n && n >= min ? n : throw new ArgumentException($"{args[i - 1]} must be at least {min}");
            if (args[i] is "echo" or "fanout")
            {
                named.Add(args[i]); // a bare section name: run the named parts only
                continue;
            }

            settings = args[i] switch
            {
                "--rounds" => settings with { Rounds = NextInt(1) },
                "--seconds" => settings with { Seconds = NextInt(1) },
                "--warmup" => settings with { WarmUpSeconds = NextInt(0) },
                "--connections" => settings with { Connections = [.. Next().Split(',').Select(c => int.Parse(c, CultureInfo.InvariantCulture))] },
                "--idle" => settings with { Idle = NextInt(0) },
                "--churn" => settings with { Churn = NextInt(0) },
                "--only" => settings with { Only = Next().Split(',') },
                "--players" => settings with { FanoutPlayers = [.. Next().Split(',').Select(c => int.Parse(c, CultureInfo.InvariantCulture)).Order()] },
                "--room-sizes" => settings with { FanoutRoomSizes = [.. Next().Split(',').Select(c => int.Parse(c, CultureInfo.InvariantCulture))] },
                "--fanout-seconds" => settings with { FanoutSeconds = NextInt(1) },
                "--fanout-warmup" => settings with { FanoutWarmUpSeconds = NextInt(0) },
                "--out" => settings with { Out = Next() },
                "--quick" => settings with
                {
                    Rounds = 1, Seconds = 1, WarmUpSeconds = 1, Connections = [16], Idle = 500, Churn = 1000,
                    FanoutPlayers = [64], FanoutRoomSizes = [8], FanoutSeconds = 1, FanoutWarmUpSeconds = 1,
                },
                var other => throw new ArgumentException($"unknown option {other}"),
            };
        }

        if (settings.Connections.Any(c => c is < 1 or > 19_000))
        {
            throw new ArgumentException("--connections: each count must be from 1 to 19000 (the open-files cap is 20000 per process)");
        }

        if (named.Count > 0)
        {
            settings = settings with { Sections = named };
        }

        if (settings.FanoutPlayers.Any(c => c is < 1 or > 19_000))
        {
            throw new ArgumentException("--players: each count must be from 1 to 19000 (the open-files cap is 20000 per process)");
        }

        if (settings.FanoutRoomSizes.Any(c => c is < 1 or > 1000))
        {
            throw new ArgumentException("--room-sizes: each size must be from 1 to 1000");
        }

        if (settings.Idle > 19_000)
        {
            throw new ArgumentException("--idle must be at most 19000 (the open-files cap is 20000 per process)");
        }

        return settings;
    }
}
