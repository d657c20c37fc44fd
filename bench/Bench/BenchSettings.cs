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

    /// <summary>Only these servers (by name), or all.</summary>
    public IReadOnlyList<string>? Only { get; init; }

    public string? Out { get; init; }

    public static BenchSettings Parse(string[] args)
    {
        var settings = new BenchSettings();
        for (var i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            int NextInt(int min) => int.Parse(Next(), CultureInfo.InvariantCulture) is var n && n >= min ? n : throw new ArgumentException($"{args[i - 1]} must be at least {min}");
            settings = args[i] switch
            {
                "--rounds" => settings with { Rounds = NextInt(1) },
                "--seconds" => settings with { Seconds = NextInt(1) },
                "--warmup" => settings with { WarmUpSeconds = NextInt(0) },
                "--connections" => settings with { Connections = [.. Next().Split(',').Select(c => int.Parse(c, CultureInfo.InvariantCulture))] },
                "--idle" => settings with { Idle = NextInt(0) },
                "--churn" => settings with { Churn = NextInt(0) },
                "--only" => settings with { Only = Next().Split(',') },
                "--out" => settings with { Out = Next() },
                "--quick" => settings with { Rounds = 1, Seconds = 1, WarmUpSeconds = 1, Connections = [16], Idle = 500, Churn = 1000 },
                var other => throw new ArgumentException($"unknown option {other}"),
            };
        }

        if (settings.Connections.Any(c => c is < 1 or > 19_000))
        {
            throw new ArgumentException("--connections: each count must be from 1 to 19000 (the open-files cap is 20000 per process)");
        }

        if (settings.Idle > 19_000)
        {
            throw new ArgumentException("--idle must be at most 19000 (the open-files cap is 20000 per process)");
        }

        return settings;
    }
}
