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

        return text.ToString();
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
