using System.Diagnostics;
using GameClient;
using GameProtocol;

namespace GameServer.Tests.Infrastructure;

/// <summary>Watches a healthy player while something else misbehaves: the longest wait between two StateUpdates.</summary>
public static class UpdateWatch
{
    public static async Task<TimeSpan> MaxGapAsync(GameConnection player, TimeSpan watch)
    {
        var max = TimeSpan.Zero;
        var last = Stopwatch.GetTimestamp();
        var until = Stopwatch.GetTimestamp() + (long)(Stopwatch.Frequency * watch.TotalSeconds);
        using var timeout = new CancellationTokenSource(watch + TimeSpan.FromSeconds(30));
        while (Stopwatch.GetTimestamp() < until)
        {
            if (await player.Incoming.ReadAsync(timeout.Token) is StateUpdate)
            {
                var gap = Stopwatch.GetElapsedTime(last);
                max = gap > max ? gap : max;
                last = Stopwatch.GetTimestamp();
            }
        }

        return max;
    }
}
