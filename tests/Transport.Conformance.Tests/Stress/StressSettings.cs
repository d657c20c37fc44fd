using System.Globalization;

namespace Transport.Conformance.Tests.Stress;

/// <summary>
/// How long and with which seed a stress case runs. <c>STRESS_SEED</c> replaces each case's fixed default seed (to
/// rerun a failure); <c>STRESS_SECONDS</c> turns the short form (one round) into the long form: rounds with new seeds
/// derived from the first until that many seconds have passed. <c>./run.sh stress</c> sets both.
/// </summary>
public static class StressSettings
{
    public const string SeedVariable = "STRESS_SEED";
    public const string SecondsVariable = "STRESS_SECONDS";
    public const string ResumeInlineVariable = "STRESS_RESUME_INLINE";

    /// <summary>The seed from <c>STRESS_SEED</c>, else the case's own default.</summary>
    public static long SeedOr(long caseDefault) =>
        Environment.GetEnvironmentVariable(SeedVariable) is { Length: > 0 } text
            ? long.Parse(text, NumberStyles.Integer, CultureInfo.InvariantCulture)
            : caseDefault;

    /// <summary>The long form's duration per case; null for the short form (one round).</summary>
    public static TimeSpan? LongRun =>
        Environment.GetEnvironmentVariable(SecondsVariable) is { Length: > 0 } text
            ? TimeSpan.FromSeconds(double.Parse(text, NumberStyles.Float, CultureInfo.InvariantCulture))
            : null;

    /// <summary>
    /// <c>STRESS_RESUME_INLINE=1</c>: a channel writer resumes from inside <c>ChannelWritabilityChanged</c>, as the
    /// Netty pattern (and the game server's StreamSender) does, instead of from a task queued behind it. DotNetty's stock
    /// transport corrupts streams that way; off by default so the cases test the transports, not that hazard.
    /// </summary>
    public static bool ResumeInline => Environment.GetEnvironmentVariable(ResumeInlineVariable) == "1";

    /// <summary>The seed of round <paramref name="round"/>: the case's seed itself for round 0, so a failed round reruns alone.</summary>
    public static long RoundSeed(long seed, int round) => round == 0 ? seed : Derive(seed, round);

    /// <summary>An independent seed for one purpose of one part of a case, from the case's seed (never HashCode: it is randomised per process).</summary>
    public static long Derive(long seed, params long[] parts)
    {
        var z = (ulong)seed;
        foreach (var part in parts)
        {
            z = Mix(z ^ Mix((ulong)part + 0x9e3779b97f4a7c15));
        }

        return (long)z;
    }

    /// <summary>A <see cref="Random"/> for one purpose, reproducible from the case's seed.</summary>
    public static Random RandomFor(long seed, params long[] parts) => new((int)(Derive(seed, parts) & int.MaxValue));

    /// <summary>The line a failure message ends with: how to run exactly this again.</summary>
    public static string RerunHint(long seed, string project, string filter) =>
        $"rerun: {SeedVariable}={seed} dotnet test {project} -c Release --filter \"{filter}\"";

    private static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9;
        z = (z ^ (z >> 27)) * 0x94d049bb133111eb;
        return z ^ (z >> 31);
    }
}
