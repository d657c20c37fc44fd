using System.Text.RegularExpressions;
using GameServer.Tests.Infrastructure;

namespace GameServer.Tests;

/// <summary>
/// `./run.sh bench` in miniature: it builds its native programs, measures, writes its report, and the game server
/// keeps no socket after thousands of connections opened and closed with FIN and with RST.
/// </summary>
public class BenchSmokeTests
{
    [Fact]
    public async Task QuickBench_MeasuresEveryServer_AndTheGameServerLeaksNoSocketUnderCloseChurn()
    {
        var report = Path.Combine(Path.GetTempPath(), $"bench-{Guid.NewGuid():N}.md");
        using var bench = BotProcess.StartIn(
            null, BotProcess.BuiltDll("bench", "Bench", "Bench.dll"),
            "--quick", "--only", "c-epoll,sockets,game,c-fanout", "--idle", "200", "--churn", "2000", "--out", report);
        var exit = await bench.WaitExitAsync(TimeSpan.FromMinutes(4));

        Assert.True(exit == 0, bench.Output);
        var text = File.ReadAllText(report);
        foreach (var server in new[] { "c-epoll", "sockets", "game" })
        {
            // A row with a positive message rate and no errors, for each server.
            Assert.Matches($@"\| `{server}` \| [1-9]\d* \|.*\| 0 \|", text);
            foreach (var mode in new[] { "fin", "rst" })
            {
                var churn = Regex.Match(text, $@"\| `{server}` \| {mode} \| 2000 \| [1-9]\d* \| 0 \| (\d+) → (\d+) \|");
                Assert.True(churn.Success, text);
                Assert.True(int.Parse(churn.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture) <= int.Parse(churn.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture), $"{server} {mode}: sockets grew: {churn.Value}");
            }
        }

        Assert.Matches(@"\| `game` \| 200 \| \d+ \| [0-9.]+ \|", text); // the idle connections were all held

        // Fan-out: every player of the step joined and read updates, on the game server and the C reference.
        foreach (var server in new[] { "c-fanout", "game" })
        {
            Assert.Matches($@"\| `{server}` \| 64 \| [1-9]\d* \|.*\| 64 \| 0 \|", text);
        }
        File.Delete(report);
    }
}
