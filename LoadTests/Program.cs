using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using System.Text.RegularExpressions;
using DotNetty.Common;
using GameClient;
using LoadTests;
using LoadTests.Harness;
using LoadTests.Scenarios;
using Microsoft.Extensions.Logging.Abstractions;

// ./run.sh load [--target host:port --metrics http://host:port/metrics] [--duration 60] [--copies 200] [--churn-rate 20] [--smoke]

// A load generator should spend its CPU on load: DotNetty's default sampling leak detector captures a stack trace for
// one buffer in 128 (9 % of the server's CPU when measured there).
ResourceLeakDetector.Level = ResourceLeakDetector.DetectionLevel.Disabled;
LoadSettings settings;
try
{
    settings = LoadSettings.Load(args);
}
catch (Exception ex) when (ex is ArgumentException or FormatException or OverflowException or JsonException)
{
    await Console.Error.WriteLineAsync($"load: {ex.Message}");
    return 2;
}

Process? server = null;
string? serverLog = null;
if (settings.Target is null)
{
    var port = FreePort();
    var metricsPort = FreePort();
    Directory.CreateDirectory(settings.ReportFolder);
    serverLog = Path.GetFullPath(Path.Combine(settings.ReportFolder, "server.log"));
    server = StartServer(port, metricsPort, settings.ServerArgs, serverLog);
    settings = settings with { Target = $"127.0.0.1:{port}", Metrics = $"http://127.0.0.1:{metricsPort}/metrics" };
}

var (host, targetPort) = ParseTarget(settings.Target!);
GameClientOptions Client(string name) => new()
{
    Host = host, Port = targetPort, PlayerName = name[..Math.Min(name.Length, 32)], Transport = settings.ClientTransport,
};
var duration = TimeSpan.FromSeconds(settings.DurationSeconds);
var ramp = TimeSpan.FromSeconds(Math.Max(1, settings.DurationSeconds / 6));

if (settings.Copies > LoadSettings.PlayersOneSuiteReads)
{
    // Said before the run, not discovered after it: the verdict would be the generator's, not the server's.
    Console.WriteLine(
        $"load: note: {settings.Copies} players at a {settings.ClientTickMs} ms client tick and the server's room ticks are more than this .NET suite "
        + $"reads on a small machine (about {LoadSettings.PlayersOneSuiteReads} players at 20 Hz on 2 cores shared with the server: each player reads 20 "
        + "StateUpdates a second). The run goes on and its verdict says if the generator fell behind; to measure how many players a server holds, "
        + "use the native client: ./run.sh bench fanout (docs/PERFORMANCE.md).");
}

Console.WriteLine($"load: target {settings.Target}, {settings.Copies} players, churn {settings.ChurnRate}/s, chaos {settings.ChaosRate}/s ({settings.ChaosBotConnections} connections per bot process), resume {settings.ResumeRate}/s, {settings.DurationSeconds} s");
using var http = new HttpClient();
var baseline = settings.Metrics is null ? null : await ReadGaugeAsync(http, settings.Metrics, "gameserver_connections_active");

var closedBefore = settings.Metrics is null ? null : await ReadClosedAsync(http, settings.Metrics);
var botDll = Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "..", "..", "..", "..", "GameClient", "Bot", "bin",
    new DirectoryInfo(AppContext.BaseDirectory).Parent!.Name, "net10.0", "GameClient.Bot.dll"));
var chaos = new ChaosScenario(Client, botDll, settings.ChaosBotConnections);
var resume = new ResumeScenario(Client);
var resumedBefore = settings.Metrics is null ? null : await ReadGaugeAsync(http, settings.Metrics, "gameserver_sessions_resumed_total");
var reliableBefore = settings.Metrics is null ? null : await ReadGaugeAsync(http, settings.Metrics, "gameserver_sessions_reliable_handled_total");

var result = await LoadRunner
    .RegisterScenarios(
        GameScenarios.Play(
            Client,
            settings.RoomSize,
            TimeSpan.FromMilliseconds(settings.ClientTickMs),
            [new LoadSimulation.RampingConstant(settings.Copies, ramp), new LoadSimulation.KeepConstant(settings.Copies, duration - ramp)],
            TimeSpan.FromSeconds(settings.WarmUpSeconds),
            settings.CleanConcurrency,
            TimeSpan.FromSeconds(settings.CleanDeadlineSeconds)),
        GameScenarios.Churn(Client, [new LoadSimulation.Inject(settings.ChurnRate, TimeSpan.FromSeconds(1), duration)]),
        chaos.Create([new LoadSimulation.Inject(settings.ChaosRate, TimeSpan.FromSeconds(1), duration)]),
        resume.Create([new LoadSimulation.Inject(settings.ResumeRate, TimeSpan.FromSeconds(1), duration)]))
    .WithReportFolder(settings.ReportFolder)
    .WithProgressInterval(TimeSpan.FromSeconds(Console.IsOutputRedirected ? 5 : 1))
    .WithThresholds(
        new Threshold($"fail rate under {settings.MaxFailPercent} %", s => s.Step == "global", s => s.FailPercent < settings.MaxFailPercent),
        new Threshold($"echo p99 under {settings.MaxEchoP99Ms} ms", s => s.Step == "echo", s => s.P99Ms < settings.MaxEchoP99Ms),
        new Threshold($"StateUpdate lateness p99 under {settings.MaxStateUpdateP99Ms} ms", s => s.Step == "state_update", s => s.P99Ms < settings.MaxStateUpdateP99Ms),
        new Threshold($"connect p99 under {settings.MaxConnectP99Ms} ms", s => s.Step == "connect", s => s.P99Ms < settings.MaxConnectP99Ms))
    .WithGeneratorLagBound(settings.MaxGeneratorLagMs)
    .RunAsync(NullLogger.Instance, Console.Out, CancellationToken.None);

Console.WriteLine();
Console.WriteLine(LoadRunner.Markdown(result.Stats, result.BrokenThresholds, result.Generator));
var problems = result.BrokenThresholds.ToList();

if (GameScenarios.PlayClean is { } clean)
{
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"clean step: {clean.Closed} players closed in {clean.Elapsed.TotalSeconds:0.0} s ({settings.CleanConcurrency} at a time)"));
    if (clean.Failed > 0)
    {
        problems.Add($"clean step: {clean.Failed} players' Goodbye failed (their close reasons show which)");
    }

    if (clean.Unfinished > 0)
    {
        problems.Add($"clean step: {clean.Unfinished} players had not finished their Goodbye handshake after {settings.CleanDeadlineSeconds} s (not waited on further)");
    }
}

if (settings.Metrics is not null && baseline is not null)
{
    // Every connection the suite opened must be gone again: no leaked channels on the server.
    double? active = null;
    for (var i = 0; i < 100 && active != baseline; i++)
    {
        await Task.Delay(200);
        active = await ReadGaugeAsync(http, settings.Metrics, "gameserver_connections_active");
    }

    Console.WriteLine($"server active connections: baseline {baseline}, after the run {active}");
    if (active != baseline)
    {
        problems.Add($"gameserver_connections_active is {active}, not back to its baseline {baseline}");
    }

    // Every victim's mode against the reason the server recorded. Play and churn leave with Goodbye only, so any
    // other reason must come from the chaos victims, exactly as many as were ended that way; client_goodbye adds
    // the Goodbye handshakes play and churn completed.
    var closedAfter = await ReadClosedAsync(http, settings.Metrics);
    Console.WriteLine();
    Console.WriteLine("| close reason | expected | observed on the server |");
    Console.WriteLine("|---|---:|---:|");
    foreach (var reason in closedAfter.Keys.Union(chaos.Expected.Keys).Union(resume.Expected.Keys).Order(StringComparer.Ordinal))
    {
        var observed = closedAfter.GetValueOrDefault(reason) - (closedBefore?.GetValueOrDefault(reason) ?? 0);
        var expected = chaos.Expected.GetValueOrDefault(reason) + resume.Expected.GetValueOrDefault(reason)
            + (reason == "client_goodbye" ? GameScenarios.Goodbyes : 0);
        Console.WriteLine($"| {reason} | {expected} | {observed} |");
        if (observed != expected)
        {
            problems.Add($"close reason {reason}: expected {expected}, the server reports {observed}");
        }
    }
}

if (settings.Metrics is not null && resumedBefore is not null)
{
    // The resume victims' own checks cover what they received; the server's counts cover what it handled: every
    // resume it made, and every reliable message once (a Move applied twice or lost would show here).
    var resumedObserved = await ReadGaugeAsync(http, settings.Metrics, "gameserver_sessions_resumed_total") - resumedBefore;
    var reliableObserved = await ReadGaugeAsync(http, settings.Metrics, "gameserver_sessions_reliable_handled_total") - reliableBefore;
    Console.WriteLine();
    Console.WriteLine("| resume check | expected | observed on the server |");
    Console.WriteLine("|---|---:|---:|");
    Console.WriteLine($"| sessions resumed | {resume.Resumes} | {resumedObserved} |");
    Console.WriteLine($"| reliable messages handled | {resume.ReliableSent} | {reliableObserved} |");
    if (resumedObserved != resume.Resumes)
    {
        problems.Add($"sessions resumed: the victims saw {resume.Resumes}, the server reports {resumedObserved}");
    }

    if (reliableObserved != resume.ReliableSent)
    {
        problems.Add($"reliable messages: the victims sent {resume.ReliableSent}, the server handled {reliableObserved}");
    }
}

if (server is not null)
{
    server.Kill(entireProcessTree: false); // SIGKILL is not needed: the suite's own connections are already closed
    await server.WaitForExitAsync();
}

Console.WriteLine($"reports: {Path.GetFullPath(result.ReportFolder)}");
if (serverLog is not null)
{
    Console.WriteLine($"server log: {serverLog}");
}

Console.WriteLine(problems.Count == 0 ? "load: all thresholds held" : "load: FAILED\n" + string.Join('\n', problems.Select(p => $"  - {p}")));
return problems.Count == 0 ? 0 : 1;

static int FreePort()
{
    using var listener = new TcpListener(IPAddress.Loopback, 0);
    listener.Start();
    return ((IPEndPoint)listener.LocalEndpoint).Port;
}

static (string Host, int Port) ParseTarget(string target)
{
    var colon = target.LastIndexOf(':');
    return colon > 0 && int.TryParse(target[(colon + 1)..], CultureInfo.InvariantCulture, out var port)
        ? (target[..colon], port)
        : throw new ArgumentException($"--target must be host:port, not '{target}'");
}

static Process StartServer(int port, int metricsPort, IReadOnlyList<string> extra, string logFile)
{
    var dll = Path.Combine(AppContext.BaseDirectory, "..", "..", "..", "..", "GameServer", "bin",
        new DirectoryInfo(AppContext.BaseDirectory).Parent!.Name, "net10.0", "GameServer.dll");
    var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
    info.ArgumentList.Add(Path.GetFullPath(dll));
    foreach (var arg in new[]
    {
        $"--Server:Port={port}", $"--Metrics:Port={metricsPort}", "--Logging:LogLevel:Default=Warning",
        "--Logging:LogLevel:GameServer.Hosting.GameServerHost=Information",

        // Every connection's close reason and every session's player name, so a mismatch in the close-reason table
        // can be traced to the victims it concerns.
        "--Logging:LogLevel:GameServer.Connection=Information", "--Logging:LogLevel:GameServer.Game.SessionHandler=Information",
        "--Logging:LogLevel:GameServer.Game.SessionStore=Information",
    }.Concat(extra))
    {
        info.ArgumentList.Add(arg);
    }

    var process = Process.Start(info)!;
    var ready = new TaskCompletionSource();
    // Flushed line by line and left open: the server's last lines may come while the suite is exiting.
    var log = TextWriter.Synchronized(new StreamWriter(logFile) { AutoFlush = true });
    process.OutputDataReceived += (_, e) =>
    {
        if (e.Data is null)
        {
            return;
        }

        log.WriteLine(e.Data);
        if (e.Data.Contains("Game server listening on", StringComparison.Ordinal))
        {
            ready.TrySetResult();
        }
    };
    process.ErrorDataReceived += (_, e) =>
    {
        if (e.Data is not null)
        {
            log.WriteLine(e.Data);
        }
    };
    process.BeginOutputReadLine();
    process.BeginErrorReadLine();

    // Waiting for the log line, not probing the port: a probe connection would itself be counted as a close
    // (peer_closed) and spoil the comparison of close reasons.
    if (!ready.Task.Wait(TimeSpan.FromSeconds(60)))
    {
        throw new InvalidOperationException("the server did not start listening within 60 s");
    }

    return process;
}

static async Task<Dictionary<string, double>> ReadClosedAsync(HttpClient http, string url)
{
    var text = await http.GetStringAsync(new Uri(url));
    return Regex.Matches(text, @"^gameserver_connections_closed_total\{[^}]*reason=""([a-z_]+)""[^}]*\} ([0-9.eE+-]+)", RegexOptions.Multiline)
        .GroupBy(m => m.Groups[1].Value)
        .ToDictionary(g => g.Key, g => g.Sum(m => double.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture)), StringComparer.Ordinal);
}

static async Task<double?> ReadGaugeAsync(HttpClient http, string url, string name)
{
    var text = await http.GetStringAsync(new Uri(url));
    var match = Regex.Match(text, $@"^{name}(\{{[^}}]*\}})? ([0-9.eE+-]+)", RegexOptions.Multiline);
    return match.Success ? double.Parse(match.Groups[2].Value, CultureInfo.InvariantCulture) : 0;
}

namespace LoadTests
{
    /// <summary>Settings from config/loadtest.json, overridden on the command line.</summary>
    internal sealed record LoadSettings
    {
        public string? Target { get; init; }

        public string? Metrics { get; init; }

        public int DurationSeconds { get; init; } = 60;

        public int WarmUpSeconds { get; init; } = 3;

        public int Copies { get; init; } = 200;

        public int RoomSize { get; init; } = 8;

        public int ClientTickMs { get; init; } = 50;

        public int ChurnRate { get; init; } = 20;

        /// <summary>Victims per second in the chaos scenario.</summary>
        public int ChaosRate { get; init; } = 2;

        /// <summary>Resume victims per second: version 2 sessions dropped mid-stream (RST, FIN, a silently abandoned socket) that resume.</summary>
        public int ResumeRate { get; init; } = 1;

        /// <summary>Connections each bot victim process holds (exit-without-close and SIGKILL end them all at once).</summary>
        public int ChaosBotConnections { get; init; } = 4;

        public double MaxFailPercent { get; init; } = 1;

        public double MaxEchoP99Ms { get; init; } = 250;

        /// <summary>Bound on <c>play</c>'s StateUpdate lateness p99 (from the update's serverTime to when the client read it).</summary>
        public double MaxStateUpdateP99Ms { get; init; } = 250;

        /// <summary>Bound on the connect time p99 (TCP connect, Hello and Welcome) of players that connected during the measured run.</summary>
        public double MaxConnectP99Ms { get; init; } = 1000;

        /// <summary>Above this lateness p99 of its own timer, the generator itself was the bottleneck and the run fails saying so.</summary>
        public double MaxGeneratorLagMs { get; init; } = 50;

        /// <summary>Goodbye handshakes the clean step runs at once.</summary>
        public int CleanConcurrency { get; init; } = ClientPool<object>.DefaultCleanConcurrency;

        /// <summary>How long the clean step waits for every player to finish its Goodbye.</summary>
        public int CleanDeadlineSeconds { get; init; } = (int)ClientPool<object>.DefaultCleanDeadline.TotalSeconds;

        /// <summary>About the most players this suite reads at 20 Hz on a 2-core machine it shares with the server.</summary>
        public const int PlayersOneSuiteReads = 2000;

        /// <summary>Connections one process may hold here (open files cap 20,000, some kept for the runtime).</summary>
        public const int MaxCopies = 19_000;

        public string ReportFolder { get; init; } = "load-reports";

        /// <summary>The suite's own connections and bot victims: <c>auto</c> (epoll on Linux), <c>sockets</c> or <c>epoll</c>.</summary>
        public string ClientTransport { get; init; } = "auto";

        public IReadOnlyList<string> ServerArgs { get; init; } = [];

        private static readonly JsonSerializerOptions Json = new() { PropertyNameCaseInsensitive = true };

        public static LoadSettings Load(string[] args)
        {
            var file = Path.Combine(AppContext.BaseDirectory, "config", "loadtest.json");
            var settings = File.Exists(file)
                ? JsonSerializer.Deserialize<LoadSettings>(File.ReadAllText(file), Json) ?? new LoadSettings()
                : new LoadSettings();
            for (var i = 0; i < args.Length; i++)
            {
                string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
                int NextInt() => int.Parse(Next(), CultureInfo.InvariantCulture);
                settings = args[i] switch
                {
                    "--target" => settings with { Target = Next() },
                    "--metrics" => settings with { Metrics = Next() },
                    "--duration" => settings with { DurationSeconds = NextInt() },
                    "--copies" => settings with { Copies = NextInt() },
                    "--churn-rate" => settings with { ChurnRate = NextInt() },
                    "--chaos-rate" => settings with { ChaosRate = NextInt() },
                    "--chaos-bot-connections" => settings with { ChaosBotConnections = NextInt() },
                    "--resume-rate" => settings with { ResumeRate = NextInt() },
                    "--room-size" => settings with { RoomSize = NextInt() },
                    "--tick-ms" => settings with { ClientTickMs = NextInt() },
                    "--warm-up" => settings with { WarmUpSeconds = NextInt() },
                    "--max-fail-percent" => settings with { MaxFailPercent = double.Parse(Next(), CultureInfo.InvariantCulture) },
                    "--max-echo-p99-ms" => settings with { MaxEchoP99Ms = double.Parse(Next(), CultureInfo.InvariantCulture) },
                    "--max-state-update-p99-ms" => settings with { MaxStateUpdateP99Ms = double.Parse(Next(), CultureInfo.InvariantCulture) },
                    "--max-connect-p99-ms" => settings with { MaxConnectP99Ms = double.Parse(Next(), CultureInfo.InvariantCulture) },
                    "--max-generator-lag-ms" => settings with { MaxGeneratorLagMs = double.Parse(Next(), CultureInfo.InvariantCulture) },
                    "--clean-concurrency" => settings with { CleanConcurrency = NextInt() },
                    "--clean-deadline" => settings with { CleanDeadlineSeconds = NextInt() },
                    "--report-folder" => settings with { ReportFolder = Next() },
                    "--client-transport" => settings with { ClientTransport = Next() },
                    "--smoke" => settings with
                    {
                        DurationSeconds = 10, WarmUpSeconds = 1, Copies = 24, ChurnRate = 5, ChaosRate = 2,
                        ServerArgs = [.. settings.ServerArgs, "--Heartbeat:IntervalMs=1000"],
                    },
                    var other when other.StartsWith("--Server:", StringComparison.Ordinal) || other.StartsWith("--Limits:", StringComparison.Ordinal)
                        || other.StartsWith("--Game:", StringComparison.Ordinal) || other.StartsWith("--Heartbeat:", StringComparison.Ordinal)
                        || other.StartsWith("--Session:", StringComparison.Ordinal) || other.StartsWith("--Connection:", StringComparison.Ordinal)
                        => settings with { ServerArgs = [.. settings.ServerArgs, other] },
                    var other => throw new ArgumentException($"unknown option {other}"),
                };
            }

            return settings.Validated();
        }

        private LoadSettings Validated()
        {
            void Require(bool holds, string message)
            {
                if (!holds)
                {
                    throw new ArgumentException(message);
                }
            }

            Require(DurationSeconds >= 1, "--duration must be at least 1 second");
            Require(WarmUpSeconds >= 0, "--warm-up must not be negative");
            Require(Copies >= 0, "--copies must not be negative");
            Require(
                Copies <= MaxCopies,
                $"--copies {Copies}: one process holds at most {MaxCopies} connections here (open files: 20,000 per process); for more players, "
                + "run several load processes with --target against one server, or measure with the native client (./run.sh bench fanout)");
            Require(CleanConcurrency >= 1, "--clean-concurrency must be at least 1");
            Require(CleanDeadlineSeconds >= 1, "--clean-deadline must be at least 1 second");
            Require(RoomSize >= 1, "--room-size must be at least 1");
            Require(ClientTickMs >= 1, "--tick-ms must be at least 1");
            Require(ChurnRate >= 0 && ChaosRate >= 0 && ResumeRate >= 0, "rates must not be negative");
            Require(ChaosBotConnections is >= 1 and <= 10_000, "--chaos-bot-connections must be between 1 and 10000");
            Require(
                MaxFailPercent >= 0 && MaxEchoP99Ms > 0 && MaxStateUpdateP99Ms > 0 && MaxConnectP99Ms > 0 && MaxGeneratorLagMs > 0,
                "threshold bounds must be positive");
            Require(
                Target is null || (Target.LastIndexOf(':') > 0 && int.TryParse(Target[(Target.LastIndexOf(':') + 1)..], CultureInfo.InvariantCulture, out var port) && port is > 0 and < 65536),
                $"--target must be host:port, not '{Target}'");
            Require(ClientTransport is "auto" or "sockets" or "epoll", $"--client-transport must be auto, sockets or epoll, not '{ClientTransport}'");
            Require(Metrics is null || Uri.IsWellFormedUriString(Metrics, UriKind.Absolute), $"--metrics must be an absolute URL, not '{Metrics}'");
            return this;
        }
    }
}
