using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using DotNetty.Common;
using GameClient;
using LoadTests;
using LoadTests.Harness;
using LoadTests.Scenarios;
using Microsoft.Extensions.Logging.Abstractions;

// ./run.sh load [--server host:port --metrics http://host:port/metrics] [--scenario play,churn] [--duration 60] [--copies 200] [--smoke] [--help]

// A load generator should spend its CPU on load: DotNetty's default sampling leak detector captures a stack trace for
// one buffer in 128 (9 % of the server's CPU when measured there).
ResourceLeakDetector.Level = ResourceLeakDetector.DetectionLevel.Disabled;
var command = LoadCommandLine.Parse(args);
await Console.Out.WriteAsync(command.Output);
foreach (var note in command.Notes)
{
    await Console.Error.WriteLineAsync($"load: note: {note}");
}

if (command.Settings is not { } settings)
{
    if (command.Error is not null)
    {
        await Console.Error.WriteLineAsync($"load: {command.Error}");
    }

    return command.ExitCode;
}

var selected = settings.SelectedScenarios;
string? botDll = null;
if (selected.Contains("chaos"))
{
    // Beside the program (it is a project reference, so a publish folder carries it too): nothing outside that folder is needed.
    botDll = Path.Combine(AppContext.BaseDirectory, "GameClient.Bot.dll");
    if (!File.Exists(botDll))
    {
        await Console.Error.WriteLineAsync($"load: the chaos scenario's bot {botDll} is missing: build or publish LoadTests again (it carries GameClient.Bot), or leave chaos out (--scenario)");
        return 2;
    }
}

Process? server = null;
string? serverLog = null;
try
{
    // The started server is killed however the run ends (a crash included): a GameServer left running would hold its
    // ports and spoil the next run's counts.
    ClusterTarget? cluster = null;
    if (settings.Cluster is { } clusterFolder)
    {
        // Players go through the cluster's HAProxy; the server's counts are its gateways'.
        cluster = ClusterTarget.Load(clusterFolder);
        if (!await cluster.HealthyAsync())
        {
            await Console.Error.WriteLineAsync($"load: the cluster in {cluster.Folder} is not running whole (every part alive, HAProxy sending to both gateways): start it with ./run.sh cluster --dir {cluster.Folder}");
            return 2;
        }

        settings = settings with { Server = $"127.0.0.1:{cluster.Port}" };
    }
    else if (settings.Server is null)
    {
        var serverDll = RepositoryServerDll();
        if (!File.Exists(serverDll))
        {
            await Console.Error.WriteLineAsync($"load: no --server given, and no GameServer build at {serverDll} to start one: pass --server host:port, or build it (dotnet build GameServer -c Release)");
            return 2;
        }

        var port = FreePort();
        var metricsPort = FreePort();
        Directory.CreateDirectory(settings.ReportFolder);
        serverLog = Path.GetFullPath(Path.Combine(settings.ReportFolder, "server.log"));
        try
        {
            server = await StartServerAsync(serverDll, port, metricsPort, settings.ServerArgs, serverLog);
        }
        catch (InvalidOperationException ex)
        {
            await Console.Error.WriteLineAsync($"load: {ex.Message}");
            return 2;
        }

        settings = settings with { Server = $"127.0.0.1:{port}", Metrics = $"http://127.0.0.1:{metricsPort}/metrics" };
    }

    _ = LoadSettings.TryParseServer(settings.Server!, out var host, out var targetPort); // validated with the settings
    GameClientOptions Client(string name) => new()
    {
        Host = host, Port = targetPort, PlayerName = name[..Math.Min(name.Length, 32)], Transport = settings.ClientTransport,
    };
    var duration = TimeSpan.FromSeconds(settings.DurationSeconds);
    var ramp = TimeSpan.FromSeconds(Math.Max(1, settings.DurationSeconds / 6));

    if (settings.Copies > LoadSettings.PlayersOneSuiteReads && selected.Contains("play"))
    {
        // Said before the run, not discovered after it: the verdict would be the generator's, not the server's.
        Console.WriteLine(
            $"load: note: {settings.Copies} players at a {settings.ClientTickMs} ms client tick and the server's room ticks are more than this .NET suite "
            + $"reads on a small machine (about {LoadSettings.PlayersOneSuiteReads} players at 20 Hz on 2 cores shared with the server: each player reads 20 "
            + "StateUpdates a second). The run goes on and its verdict says if the generator fell behind; to measure how many players a server holds, "
            + "use the native client: ./run.sh bench fanout (docs/PERFORMANCE.md).");
    }

    Console.WriteLine($"load: server {settings.Server}, scenarios {string.Join(", ", selected)}: {settings.Copies} players, churn {settings.ChurnRate}/s, chaos {settings.ChaosRate}/s ({settings.ChaosBotConnections} connections per bot process), resume {settings.ResumeRate}/s, {settings.DurationSeconds} s");
    using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
    var counters = new ServerCounters(http, cluster?.GatewayMetrics ?? (settings.Metrics is { } one ? [one] : []));
    double? baseline = null;
    Dictionary<string, double>? closedBefore = null;
    double? resumedBefore = null;
    double? reliableBefore = null;
    IReadOnlyList<(string Url, double Closed, double Resumed)>? perGatewayBefore = null;
    if (counters.Enabled)
    {
        try
        {
            baseline = await counters.GaugeAsync("gameserver_connections_active");
            closedBefore = await counters.ClosedAsync();
            resumedBefore = await counters.CounterAsync("gameserver_sessions_resumed_total");
            reliableBefore = await counters.CounterAsync("gameserver_sessions_reliable_handled_total");
            perGatewayBefore = await counters.PerEndpointAsync();
        }
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException or TimeoutException)
        {
            // Before any load: the run could not be judged, so it does not start (bad input or an unreachable server).
            var which = cluster is null ? $"--metrics {settings.Metrics}" : $"the gateways' metrics ({string.Join(", ", counters.Urls)})";
            await Console.Error.WriteLineAsync($"load: cannot read {which}: {(ex is TaskCanceledException ? "no answer within 10 s" : ex.Message)}");
            return 2;
        }
    }

    var chaos = new ChaosScenario(Client, botDll ?? string.Empty, settings.ChaosBotConnections);
    var resume = new ResumeScenario(Client);
    using var kill = cluster is null ? null : new KillScenario(cluster, async part =>
    {
        if (cluster.MetricsOf(part) is { } url)
        {
            await counters.BankAsync(url);
        }
    });

    var scenarios = new Dictionary<string, Func<ScenarioProps>>(StringComparer.Ordinal)
    {
        ["play"] = () => GameScenarios.Play(
                Client,
                settings.RoomSize,
                TimeSpan.FromMilliseconds(settings.ClientTickMs),
                [new LoadSimulation.RampingConstant(settings.Copies, ramp), new LoadSimulation.KeepConstant(settings.Copies, duration - ramp)],
                TimeSpan.FromSeconds(settings.WarmUpSeconds),
                settings.CleanConcurrency,
                TimeSpan.FromSeconds(settings.CleanDeadlineSeconds),
                resumable: cluster is not null) // players that outlive a killed gateway
            .WithThresholds(settings.PlayThresholds()),
        ["churn"] = () => GameScenarios.Churn(Client, [new LoadSimulation.Inject(settings.ChurnRate, TimeSpan.FromSeconds(1), duration)]),
        ["chaos"] = () => chaos.Create([new LoadSimulation.Inject(settings.ChaosRate, TimeSpan.FromSeconds(1), duration)]),
        ["resume"] = () => resume.Create([new LoadSimulation.Inject(settings.ResumeRate, TimeSpan.FromSeconds(1), duration)]),
        ["kill"] = () => kill!.Create([new LoadSimulation.Inject(1, TimeSpan.FromSeconds(settings.KillIntervalSeconds), duration)]),
    };

    var result = await LoadRunner
        .RegisterScenarios([.. selected.Select(name => scenarios[name]())])
        .WithReportFolder(settings.ReportFolder)
        .WithProgressInterval(TimeSpan.FromSeconds(Console.IsOutputRedirected ? 5 : 1))
        .WithReportingInterval(TimeSpan.FromSeconds(settings.ReportingIntervalSeconds))
        .WithThresholds(settings.FailRateThreshold())
        .WithGeneratorLagBound(settings.MaxGeneratorLagMs)
        .WithAfterRun(CheckAfterRunAsync)
        .RunAsync(NullLogger.Instance, Console.Out, CancellationToken.None);

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

    var problems = result.BrokenThresholds;
    Console.WriteLine(problems.Count == 0 ? "load: all thresholds held" : "load: FAILED\n" + string.Join('\n', problems.Select(p => $"  - {p}")));
    return problems.Count == 0 ? 0 : 1;

    // After the scenarios' clean steps: the clean step's outcome, leaked connections, and the server's counts against
    // what the victims predict. What it finds goes into the reports and the verdict.
    async Task<AfterRun> CheckAfterRunAsync(RunResult run)
    {
        var found = new List<string>();
        var checks = new List<CheckRow>();
        var reasons = new List<CloseReasonRow>();
        if (run.AbortedBy is not null)
        {
            Console.WriteLine($"load: the run was stopped early by the threshold {run.AbortedBy}");
        }

        if (GameScenarios.PlayClean is { } clean)
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"clean step: {clean.Closed} players closed in {clean.Elapsed.TotalSeconds:0.0} s ({settings.CleanConcurrency} at a time)"));
            checks.Add(new CheckRow("clean step: players whose Goodbye failed", "0", clean.Failed.ToString(CultureInfo.InvariantCulture), clean.Failed == 0));
            checks.Add(new CheckRow($"clean step: players unfinished after {settings.CleanDeadlineSeconds} s", "0", clean.Unfinished.ToString(CultureInfo.InvariantCulture), clean.Unfinished == 0));
            if (clean.Failed > 0)
            {
                found.Add($"clean step: {clean.Failed} players' Goodbye failed (their close reasons show which)");
            }

            if (clean.Unfinished > 0)
            {
                found.Add($"clean step: {clean.Unfinished} players had not finished their Goodbye handshake after {settings.CleanDeadlineSeconds} s (not waited on further)");
            }
        }

        if (chaos.Unaccounted > 0)
        {
            found.Add($"chaos: {chaos.Unaccounted} victim connections were cut short by the run's stop or ended after the tally was taken: the server's close reasons include closes the comparison cannot predict");
        }

        if (counters.Enabled && baseline is not null)
        {
            // Every connection the suite opened must be gone again: no leaked channels on the server.
            double? active = null;
            for (var i = 0; i < 100 && active != baseline; i++)
            {
                await Task.Delay(200);
                active = await counters.GaugeAsync("gameserver_connections_active");
            }

            Console.WriteLine($"server active connections: baseline {baseline}, after the run {active}");
            checks.Add(new CheckRow("server active connections after the run", $"{baseline}", $"{active}", active == baseline));
            if (active != baseline)
            {
                found.Add($"gameserver_connections_active is {active}, not back to its baseline {baseline}");
            }

            // Every victim's mode against the reason the server recorded. Play and churn leave with Goodbye only, so any
            // other reason must come from the chaos victims, exactly as many as were ended that way; client_goodbye adds
            // the Goodbye handshakes play and churn completed.
            var closedAfter = await counters.ClosedAsync();
            var unseen = counters.HeldAtKills; // closes of connections a killed gateway took with it
            Console.WriteLine();
            Console.WriteLine("| close reason | expected | observed on the server |");
            Console.WriteLine("|---|---:|---:|");
            // Behind HAProxy a gateway sees HAProxy's side of each connection: a client's RST reaches it as an RST or a
            // FIN depending on timing, so against a cluster the two are compared as one ("the peer ended it").
            static string Class(string reason, bool proxied) =>
                proxied && reason is "peer_reset" or "peer_closed" ? "peer_reset+peer_closed" : reason;
            var proxied = cluster is not null;
            double Sum(IEnumerable<KeyValuePair<string, double>> counts, string name) => counts.Where(c => Class(c.Key, proxied) == name).Sum(c => c.Value);
            var expectedCounts = chaos.Expected.Select(e => KeyValuePair.Create(e.Key, (double)e.Value))
                .Concat(resume.Expected.Select(e => KeyValuePair.Create(e.Key, (double)e.Value)))
                .Append(KeyValuePair.Create("client_goodbye", (double)GameScenarios.Goodbyes))
                .ToList();
            foreach (var reason in closedAfter.Keys.Union(chaos.Expected.Keys).Union(resume.Expected.Keys).Select(r => Class(r, proxied)).Distinct().Order(StringComparer.Ordinal))
            {
                var observed = Sum(closedAfter, reason) - (closedBefore is null ? 0 : Sum(closedBefore, reason));
                var expected = Sum(expectedCounts, reason);
                if (expected == 0 && observed == 0)
                {
                    continue; // the server exports every reason it knows at 0; only those that happened or were due count
                }

                Console.WriteLine($"| {reason} | {expected} | {observed} |");
                reasons.Add(new CloseReasonRow(reason, expected, observed));
            }

            // A killed gateway takes the connections it held with it: their closes are never counted. So against a
            // cluster with kills the shortfalls together are bounded by the connections the killed gateways held when
            // they died.
            var shortfall = reasons.Sum(r => Math.Max(0, r.Expected - r.Observed));
            if ((kill?.Killed.Values.Sum() ?? 0) == 0)
            {
                // Nothing was killed (one server, or a cluster without kills): every reason exactly as predicted.
                foreach (var row in reasons.Where(r => r.Observed != r.Expected))
                {
                    found.Add($"close reason {row.Reason}: expected {row.Expected}, the server reports {row.Observed}");
                }
            }
            else
            {
                // With parts killed, a client whose attempt failed (a Hello that got no Welcome in time, a Goodbye cut
                // short) left a close on the server that no client predicted: the excess is bounded by those failures.
                var failed = run.Stats.Where(st => st.Step == "global" && st.Scenario != "kill").Sum(st => st.Fail);
                var excess = reasons.Sum(r => Math.Max(0, r.Observed - r.Expected));
                Console.WriteLine($"closes beyond the expected: {excess}; client attempts that failed: {failed}");
                checks.Add(new CheckRow("close reasons beyond expected (clients' failed attempts under kills)", $"at most {failed}", $"{excess}", excess <= failed));
                if (excess > failed)
                {
                    found.Add($"close reasons: {excess} closes beyond the expected, more than the {failed} client attempts that failed");
                }
            }

            if (cluster is not null && (kill?.Killed.Values.Sum() ?? 0) > 0)
            {
                Console.WriteLine($"closes never counted (connections the killed gateways held): at most {unseen}; short of the expected: {shortfall}");
                checks.Add(new CheckRow("close reasons short of expected (killed gateways' connections)", $"at most {unseen}", $"{shortfall}", shortfall <= unseen));
                if (shortfall > unseen)
                {
                    found.Add($"close reasons: {shortfall} closes short of the expected, more than the {unseen} connections the killed gateways held");
                }
            }
        }

        if (counters.Enabled && resumedBefore is not null && (selected.Contains("resume") || cluster is not null))
        {
            // The victims' own checks cover what they received; the server's counts cover what it handled: every
            // resume it made, and every reliable message once (a Move applied twice or lost would show here).
            var resumedObserved = await counters.CounterAsync("gameserver_sessions_resumed_total") - resumedBefore;
            var resumedExpected = resume.Resumes + GameScenarios.PlayResumes;
            Console.WriteLine();
            Console.WriteLine("| resume check | expected | observed on the server |");
            Console.WriteLine("|---|---:|---:|");
            Console.WriteLine($"| sessions resumed | {resumedExpected} | {resumedObserved} |");

            // A resume the server made may never reach its client: its Welcome died with a killed gateway (at most
            // the connections the killed gateways held), or the client had given up (a failed attempt). Against a
            // cluster the server may count up to that many more, never fewer.
            var failedAttempts = run.Stats.Where(st => st.Step == "global" && st.Scenario != "kill").Sum(st => st.Fail);
            var slack = counters.HeldAtKills + failedAttempts;
            var resumesHold = cluster is null ? resumedObserved == resumedExpected : resumedObserved >= resumedExpected && resumedObserved <= resumedExpected + slack;
            checks.Add(new CheckRow("sessions resumed", cluster is null ? $"{resumedExpected}" : $"{resumedExpected} to {resumedExpected + slack}", $"{resumedObserved}", resumesHold));
            if (!resumesHold)
            {
                found.Add($"sessions resumed: the clients saw {resumedExpected}, the server reports {resumedObserved}");
            }

            if (cluster is not null && perGatewayBefore is not null)
            {
                // Where it happened: each gateway's share (a client does not know which gateway it was on, so only the
                // sums above are compared with what the clients did).
                var after = await counters.PerEndpointAsync();
                Console.WriteLine();
                Console.WriteLine("| gateway | connections closed | sessions resumed |");
                Console.WriteLine("|---|---:|---:|");
                for (var i = 0; i < after.Count; i++)
                {
                    var name = $"gateway{i + 1}";
                    var closedHere = after[i].Closed - perGatewayBefore[i].Closed;
                    var resumedHere = after[i].Resumed - perGatewayBefore[i].Resumed;
                    Console.WriteLine($"| {name} | {closedHere} | {resumedHere} |");
                    checks.Add(new CheckRow($"{name}: connections closed, sessions resumed (its share)", "-", $"{closedHere}, {resumedHere}", true));
                }
            }

            if (cluster is not null)
            {
                // In a cluster the session grains handle reliable messages, and a killed silo takes its counts with it:
                // the proof of once-each is the victims' own checks (stream items, Echoes and Moves, each once, in order).
                Console.WriteLine("| reliable messages handled | (the clients' own checks) | - |");
                Console.WriteLine($"kills: {string.Join(", ", kill?.Killed.Select(k => $"{k.Key} {k.Value}") ?? [])}");
            }
            else
            {
                var reliableObserved = await counters.CounterAsync("gameserver_sessions_reliable_handled_total") - reliableBefore;
                Console.WriteLine($"| reliable messages handled | {resume.ReliableSent} | {reliableObserved} |");
                checks.Add(new CheckRow("reliable messages handled", $"{resume.ReliableSent}", $"{reliableObserved}", reliableObserved == resume.ReliableSent));
                if (reliableObserved != resume.ReliableSent)
                {
                    found.Add($"reliable messages: the victims sent {resume.ReliableSent}, the server handled {reliableObserved}");
                }
            }
        }

        return new AfterRun(reasons, checks, found);
    }
}
catch (Exception ex) when (ex is not OutOfMemoryException)
{
    // Not an expected failure (those are answered above with one line): the run failed, with the whole story.
    await Console.Error.WriteLineAsync($"load: FAILED: the suite itself failed: {ex}");
    return 1;
}
finally
{
    if (server is { HasExited: false })
    {
        server.Kill(entireProcessTree: false);
        await server.WaitForExitAsync();
    }
}

// Without --server the suite starts the repository's own GameServer build (./run.sh load); a publish folder used
// with --server needs nothing from the repository.
static string RepositoryServerDll() => Path.GetFullPath(Path.Combine(
    AppContext.BaseDirectory, "..", "..", "..", "..", "GameServer", "bin", new DirectoryInfo(AppContext.BaseDirectory).Parent!.Name, "net10.0", "GameServer.dll"));

static int FreePort()
{
    using var listener = new TcpListener(IPAddress.Loopback, 0);
    listener.Start();
    return ((IPEndPoint)listener.LocalEndpoint).Port;
}

static async Task<Process> StartServerAsync(string dll, int port, int metricsPort, IReadOnlyList<string> extra, string logFile)
{
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
    // (peer_closed) and spoil the comparison of close reasons. A server that exits first (a bad --Server:… value) is
    // said at once, not after the whole minute.
    var exited = process.WaitForExitAsync();
    var first = await Task.WhenAny(ready.Task, exited, Task.Delay(TimeSpan.FromSeconds(60)));
    if (first == ready.Task)
    {
        return process;
    }

    if (first == exited)
    {
        throw new InvalidOperationException($"the server exited with code {process.ExitCode} before it listened (its log: {logFile})");
    }

    process.Kill(entireProcessTree: false);
    await process.WaitForExitAsync();
    throw new InvalidOperationException($"the server did not start listening within 60 s (its log: {logFile})");
}
