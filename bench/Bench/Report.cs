using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;

namespace Bench;

/// <summary>The Markdown that goes to docs/PERFORMANCE.md: medians over the rounds, as ratios to plain sockets.</summary>
internal static class Report
{
    private const string Baseline = "sockets";

    /// <summary>Everything from this line on in the output file is kept when the bench rewrites it.</summary>
    public const string HandWrittenMarker = "<!-- Written by hand from here on; ./run.sh bench keeps it. -->";

    public static string Render(
        BenchSettings settings,
        IReadOnlyList<ServerKind> servers,
        IReadOnlyList<EchoResult> echo,
        IReadOnlyList<IdleResult> idle,
        IReadOnlyList<ChurnResult> churn,
        IReadOnlyList<ServerKind> fanoutServers,
        IReadOnlyList<FanoutResult> fanout,
        DateTime started,
        string[] commandLine)
    {
        var text = new StringBuilder();
        var inv = CultureInfo.InvariantCulture;
        text.AppendLine("# Performance");
        text.AppendLine();
        text.AppendLine("Made by `./run.sh bench` (`bench/Bench`, `bench/native`); every number below comes from one run of it, and ratios");
        text.AppendLine("compare servers measured in that same run. The tables are rewritten by each run; the notes at the end are kept.");
        text.AppendLine();
        text.AppendLine(inv, $"- Run: {started:yyyy-MM-dd HH:mm} UTC, `{string.Join(' ', commandLine.Skip(1))}` ({settings.Rounds} rounds, {settings.WarmUpSeconds} s warm-up + {settings.Seconds} s measured per point; servers alternate within each round; medians of the rounds)");
        text.AppendLine(inv, $"- Machine: {Environment.ProcessorCount} cores ({CpuModel()}), {RuntimeInformation.OSDescription}, .NET {Environment.Version}; server and load client share these cores over loopback");
        text.AppendLine("- Load client: `bench/native/load_client.c`, one epoll thread, each connection with one 32-byte request in flight (ping-pong); latency is per round trip; its own CPU is reported, since on 2 cores it competes with the server");
        text.AppendLine("- Server CPU: user + system time of the server process over the measured window (from /proc, 10 ms ticks), divided by the messages answered");
        text.AppendLine();
        text.AppendLine("| server | what it is |");
        text.AppendLine("|---|---|");
        foreach (var server in servers)
        {
            text.AppendLine(inv, $"| `{server.Name}` | {server.Description} |");
        }

        foreach (var connections in settings.Connections)
        {
            var rows = servers.Select(s => Median(echo.Where(e => e.Server == s.Name && e.Connections == connections).ToList())).Where(r => r is not null).ToList();
            var baseline = rows.FirstOrDefault(r => r!.Server == Baseline);
            text.AppendLine();
            text.AppendLine(inv, $"## Echo, {connections} connections");
            text.AppendLine();
            text.AppendLine("| server | msg/s | × sockets | p50 µs | p99 µs | p99.9 µs | server CPU-µs/msg | × sockets | client CPU % | server RSS MiB | errors |");
            text.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
            foreach (var r in rows)
            {
                text.AppendLine(inv, $"| `{r!.Server}` | {r.MessagesPerSecond:0} | {Ratio(r.MessagesPerSecond, baseline?.MessagesPerSecond)} | {r.P50Us} | {r.P99Us} | {r.P999Us} | {r.ServerCpuUsPerMessage:0.00} | {Ratio(r.ServerCpuUsPerMessage, baseline?.ServerCpuUsPerMessage)} | {r.ClientCpuPercent:0} | {r.RssMiB:0} | {r.Errors} |");
            }
        }

        if (idle.Count > 0)
        {
            text.AppendLine();
            text.AppendLine("## Idle connections");
            text.AppendLine();
            text.AppendLine("One client process opens the connections (the game server's each say Hello and get a Welcome) and holds them; memory");
            text.AppendLine("per connection is the growth of the server's resident set divided by the connections. The open-files cap here is");
            text.AppendLine("20,000 per process, so one server holds at most about 19,900.");
            text.AppendLine();
            text.AppendLine("| server | connections held | server RSS MiB | KiB per connection |");
            text.AppendLine("|---|---:|---:|---:|");
            foreach (var r in idle)
            {
                text.AppendLine(inv, $"| `{r.Server}` | {r.Opened} | {r.RssMiB:0} | {r.BytesPerConnection / 1024:0.0} |");
            }
        }

        if (churn.Count > 0)
        {
            text.AppendLine();
            text.AppendLine("## Close churn");
            text.AppendLine();
            text.AppendLine("Connections opened, answered once (after Hello and Welcome on the game server) and closed by the client, 16 at a");
            text.AppendLine("time, with FIN (a plain close) or RST (SO_LINGER 0). A leak would show as the server's open sockets (counted in");
            text.AppendLine("/proc/PID/fd after a short warm-up churn, and again once the churn has settled) not coming back.");
            text.AppendLine();
            text.AppendLine("| server | close | connections | per second | errors | server sockets before → after |");
            text.AppendLine("|---|---|---:|---:|---:|---|");
            foreach (var r in churn)
            {
                text.AppendLine(inv, $"| `{r.Server}` | {r.Mode} | {settings.Churn} | {r.PerSecond:0} | {r.Errors} | {r.SocketsBefore} → {r.SocketsAfter} |");
            }
        }

        if (fanout.Count > 0)
        {
            text.AppendLine();
            RenderFanout(text, settings, fanoutServers, fanout, started, commandLine);
        }

        return text.ToString();
    }

    /// <summary>Start and end of the fan-out part, so that a run of one part keeps the other's tables.</summary>
    public const string FanoutStart = "<!-- fan-out tables: ./run.sh bench fanout rewrites from here -->";

    public const string FanoutEnd = "<!-- end of fan-out tables -->";

    /// <summary>
    /// The file a run writes: its own tables; the other part's tables from <paramref name="previous"/> when this run
    /// measured one part only; and the hand-written notes of <paramref name="previous"/>, always.
    /// </summary>
    public static string Merge(string previous, string rendered, IReadOnlySet<string> sections)
    {
        var notesAt = previous.IndexOf(HandWrittenMarker, StringComparison.Ordinal);
        var notes = notesAt >= 0 ? previous[notesAt..] : "";
        var tables = notesAt >= 0 ? previous[..notesAt] : previous;
        var oldFanout = Between(tables, FanoutStart, FanoutEnd);
        var oldHead = oldFanout is null ? tables : tables[..tables.IndexOf(FanoutStart, StringComparison.Ordinal)];
        var newFanout = Between(rendered, FanoutStart, FanoutEnd);
        var newHead = newFanout is null ? rendered : rendered[..rendered.IndexOf(FanoutStart, StringComparison.Ordinal)];
        // A part this run did not measure (not asked for, or nothing of it rendered) keeps the previous run's tables.
        var head = (sections.Contains("echo") && newHead.Contains("## Echo", StringComparison.Ordinal)) || oldHead.Trim().Length == 0 ? newHead : oldHead;
        var fan = sections.Contains("fanout") && newFanout is not null ? newFanout : oldFanout;
        var text = new StringBuilder(head.TrimEnd()).AppendLine();
        if (fan is not null)
        {
            text.AppendLine().AppendLine(fan);
        }

        if (notes.Length > 0)
        {
            text.AppendLine().Append(notes);
        }

        return text.ToString();
    }

    private static string? Between(string text, string start, string end)
    {
        var from = text.IndexOf(start, StringComparison.Ordinal);
        var to = from < 0 ? -1 : text.IndexOf(end, from, StringComparison.Ordinal);
        return to < 0 ? null : text[from..(to + end.Length)];
    }

    private static void RenderFanout(
        StringBuilder text, BenchSettings settings, IReadOnlyList<ServerKind> servers, IReadOnlyList<FanoutResult> fanout, DateTime started, string[] commandLine)
    {
        const string Reference = "c-fanout";
        var inv = CultureInfo.InvariantCulture;
        text.AppendLine(FanoutStart);
        text.AppendLine("## Fan-out: players at 20 Hz");
        text.AppendLine();
        text.AppendLine(inv, $"- Run: {started:yyyy-MM-dd HH:mm} UTC, `{string.Join(' ', commandLine.Skip(1))}`; {settings.FanoutWarmUpSeconds} s warm-up after every player's first update (a fresh server's JIT is still tiering up before that), then {settings.FanoutSeconds} s measured per step; one server process per step; the servers take turns at each step, so figures compared were measured minutes apart");
        text.AppendLine("- Load client: `load_client fanout` (`bench/native/load_client.c`), one epoll thread on the same two cores: each player says Hello (version 1), joins room `r<index / room size>`, answers Pings and reads StateUpdates. Lateness = the client's wall clock when it read the update minus the update's `serverTimeUnixMs` (the same machine clock; the server's millisecond truncation makes it up to 1 ms high). Percentiles are bucket upper edges (0.1 ms buckets).");
        text.AppendLine("- Server CPU-µs/update: the server's user + system time over the measured window divided by the updates the client read. Memory per player: the server's resident-set growth from before the first connection to all players joined, divided by the players.");
        text.AppendLine("- Players at 20 Hz: the largest step whose players all joined, none was lost, every player read its 20 updates a second (within 5 %: a server that skips updates to keep up has not held the rate) and whose lateness p99 stayed within one tick (50 ms). A step that misses is tried once more (`tries` 2), and a try that held is kept (of two that missed, the lower p99): on this shared machine one stall of the host in the window is enough to miss, for the C server as for the game. Steps stop after the first that missed twice. \"client behind\" counts the client's epoll passes more than 50 ms apart: when it is not 0 the client itself was late and the figures are a floor.");
        text.AppendLine();
        text.AppendLine("| server | what it is |");
        text.AppendLine("|---|---|");
        foreach (var server in servers)
        {
            text.AppendLine(inv, $"| `{server.Name}` | {server.Description} |");
        }

        text.AppendLine();
        text.AppendLine("### Summary");
        text.AppendLine();
        text.AppendLine("| room size | server | players at 20 Hz | × c-fanout | CPU-µs/update at the largest step both held | × c-fanout |");
        text.AppendLine("|---:|---|---:|---:|---:|---:|");
        foreach (var roomSize in settings.FanoutRoomSizes)
        {
            int Held(string server) => fanout.Where(r => r.Server == server && r.RoomSize == roomSize && r.HeldTick).Select(r => r.Players).DefaultIfEmpty(0).Max();
            var referenceHeld = Held(Reference);
            foreach (var server in servers.Select(s => s.Name))
            {
                var held = Held(server);
                var common = Math.Min(held, referenceHeld);
                var mine = fanout.FirstOrDefault(r => r.Server == server && r.RoomSize == roomSize && r.Players == common);
                var theirs = fanout.FirstOrDefault(r => r.Server == Reference && r.RoomSize == roomSize && r.Players == common);
                var cpu = mine is null ? "–" : $"{mine.ServerCpuUsPerUpdate:0.00} (at {common})";
                text.AppendLine(inv, $"| {roomSize} | `{server}` | {held} | {Ratio(held, referenceHeld)} | {cpu} | {Ratio(mine?.ServerCpuUsPerUpdate ?? 0, theirs?.ServerCpuUsPerUpdate)} |");
            }
        }

        foreach (var roomSize in settings.FanoutRoomSizes)
        {
            text.AppendLine();
            text.AppendLine(inv, $"### Rooms of {roomSize}");
            text.AppendLine();
            text.AppendLine("| server | players | updates/s | lateness p50 ms | p99 ms | p99.9 ms | max ms | server CPU-µs/update | MB/s sent | server KiB/player | client CPU % | client behind | joined | errors | tries |");
            text.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
            foreach (var r in fanout.Where(r => r.RoomSize == roomSize).OrderBy(r => servers.ToList().FindIndex(s => s.Name == r.Server)).ThenBy(r => r.Players))
            {
                text.AppendLine(inv, $"| `{r.Server}` | {r.Players} | {r.UpdatesPerSecond:0} | {r.P50Us / 1000.0:0.0} | {r.P99Us / 1000.0:0.0} | {r.P999Us / 1000.0:0.0} | {r.MaxUs / 1000.0:0.0} | {r.ServerCpuUsPerUpdate:0.00} | {r.BytesPerSecond / 1e6:0.0} | {r.KiBPerPlayer:0.0} | {r.ClientCpuPercent:0} | {r.ClientLate} | {r.Joined} | {r.Errors} | {r.Tries} |");
            }
        }

        // The projection the issue asks for: what 10,000 players would cost where the client does not share the cores.
        var projected = fanout.Where(r => r.RoomSize == settings.FanoutRoomSizes[0] && r.HeldTick).GroupBy(r => r.Server)
            .Select(g => g.OrderByDescending(r => r.Players).First()).ToList();
        if (projected.Count > 0)
        {
            text.AppendLine();
            text.AppendLine(inv, $"Projection, not a measurement: 10,000 players in rooms of {settings.FanoutRoomSizes[0]} at 20 Hz receive 200,000 updates/s. At the CPU per update measured at each server's largest held step, that is:");
            text.AppendLine();
            foreach (var r in projected)
            {
                text.AppendLine(inv, $"- `{r.Server}`: {r.ServerCpuUsPerUpdate:0.00} µs × 200,000/s = {r.ServerCpuUsPerUpdate * 0.2:0.00} cores (measured at {r.Players} players)");
            }
        }

        text.AppendLine(FanoutEnd);
    }

    private static EchoResult? Median(List<EchoResult> runs)
    {
        if (runs.Count == 0)
        {
            return null;
        }

        T Mid<T>(Func<EchoResult, T> field) => runs.Select(field).Order().ElementAt(runs.Count / 2);
        return runs[0] with
        {
            MessagesPerSecond = Mid(r => r.MessagesPerSecond),
            P50Us = Mid(r => r.P50Us),
            P99Us = Mid(r => r.P99Us),
            P999Us = Mid(r => r.P999Us),
            ServerCpuUsPerMessage = Mid(r => r.ServerCpuUsPerMessage),
            ClientCpuPercent = Mid(r => r.ClientCpuPercent),
            RssMiB = Mid(r => r.RssMiB),
            Errors = runs.Sum(r => r.Errors),
        };
    }

    private static string Ratio(double value, double? baseline) =>
        baseline is > 0 ? (value / baseline.Value).ToString("0.00", CultureInfo.InvariantCulture) : "–";

    private static string CpuModel()
    {
        try
        {
            var line = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal));
            return line is null ? RuntimeInformation.ProcessArchitecture.ToString() : line[(line.IndexOf(':', StringComparison.Ordinal) + 2)..];
        }
        catch (IOException)
        {
            return RuntimeInformation.ProcessArchitecture.ToString();
        }
    }
}
