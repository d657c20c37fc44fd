using System.Collections.Concurrent;
using System.Diagnostics;
using GameClient;
using GameProtocol;
using LoadTests.Harness;

namespace LoadTests.Scenarios;

/// <summary>
/// The killer: while players play, victims join a room and are ended mid-stream in every way the close cases list,
/// in turn. In-process victims abort, close with unread data, FIN, half-close, go silent or say Goodbye; bot
/// processes, each holding several connections, exit without closing or are killed with SIGKILL. Each mode's expected server-side close reason is
/// tallied, so the run can compare it with what the server reports.
/// </summary>
public sealed class ChaosScenario
{
    private static readonly (string Mode, string ExpectedReason)[] Modes =
    [
        ("abort", "peer_reset"),
        ("close-with-unread", "peer_reset"),
        ("fin", "peer_closed"),
        ("half-close", "peer_closed"),
        ("silent", "heartbeat_timeout"),
        ("exit-without-close", "peer_reset"),
        ("sigkill", "peer_reset"),
        ("goodbye", "client_goodbye"),
    ];

    // Longer than any sane heartbeat interval times misses; a server that has not ended a silent peer by then shows as
    // a heartbeat_timeout mismatch in the run's table.
    private static readonly TimeSpan SilentVictimBound = TimeSpan.FromSeconds(60);

    private static readonly TimeSpan UnreadPileUp = TimeSpan.FromMilliseconds(250);

    private readonly Func<string, GameClientOptions> client;
    private readonly string botDll;
    private readonly int botConnections;
    private readonly ConcurrentBag<(GameConnection Connection, Task Ended)> silent = [];
    private readonly ConcurrentDictionary<Task, byte> running = new();
    private readonly ConcurrentDictionary<Process, byte> bots = new();
    private readonly object tally = new();
    private bool sealedTally;
    private long unaccounted;
    private long turn;

    /// <param name="botConnections">Connections each bot victim process holds; all of them end with the process.</param>
    public ChaosScenario(Func<string, GameClientOptions> client, string botDll, int botConnections)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(botConnections, 1);
        this.client = client;
        this.botDll = botDll;
        this.botConnections = botConnections;
    }

    /// <summary>
    /// Expected server close reasons, per reason, for the victims ended so far; fixed once the clean step has run (the
    /// after-run comparison reads it then, and a straggler must not change it under the comparison).
    /// </summary>
    public ConcurrentDictionary<string, int> Expected { get; } = new(StringComparer.Ordinal);

    /// <summary>
    /// Victim connections whose close the tally cannot predict: cut short by the run's stop, or ended after the tally
    /// was fixed. Any makes the close-reason comparison unreliable, which the run says.
    /// </summary>
    public long Unaccounted => Interlocked.Read(ref unaccounted);

    public ScenarioProps Create(LoadSimulation[] load) =>
        Scenario.Create("chaos", async context =>
            {
                var (mode, expected) = Modes[(int)(Interlocked.Increment(ref turn) - 1) % Modes.Length];
                var victim = $"chaos{context.ScenarioInfo.InstanceNumber}";
                var victims = mode is "exit-without-close" or "sigkill" ? botConnections : 1;
                var run = mode is "exit-without-close" or "sigkill"
                    ? RunBotVictimAsync(victim, mode, context.ScenarioCancellationToken)
                    : RunInProcessVictimAsync(victim, mode);
                running[run] = 0;
                try
                {
                    await run;
                }
                catch (OperationCanceledException) when (context.ScenarioCancellationToken.IsCancellationRequested)
                {
                    Interlocked.Add(ref unaccounted, victims); // its bot was killed mid-way: which closes the server saw is unknown
                    throw;
                }
                finally
                {
                    running.TryRemove(run, out _);
                }

                Count(expected, victims);
                return Response.Ok(statusCode: mode);
            })
            .WithLoadSimulations(load)
            .WithoutWarmUp()
            .WithClean(async _ =>
            {
                // Victims still running (the harness stops waiting for invocations after its limit): the tally is
                // fixed only after them, and bot processes that are still alive by the bound are killed, so nothing
                // changes the tally while the comparison reads it.
                if (!await Within(Task.WhenAll(running.Keys), SilentVictimBound))
                {
                    foreach (var bot in bots.Keys)
                    {
                        bot.Kill(entireProcessTree: true);
                    }

                    await Within(Task.WhenAll(running.Keys), TimeSpan.FromSeconds(5));
                }

                // A silent victim is ended by the server's heartbeat, which may come after the last invocation: wait
                // for it (bounded), so the run compares the close the server chose, not one the suite forced. Reading
                // again (still not answering Pings) is what lets the victim see that close at all.
                // All together: the bound is per run, not per victim.
                await Task.WhenAll(silent.Select(async victim =>
                {
                    victim.Connection.ResumeReading();
                    await victim.Ended.WaitAsync(SilentVictimBound).ContinueWith(_ => { }, TaskScheduler.Default);
                    await victim.Connection.DisposeAsync();
                }));
                lock (tally)
                {
                    sealedTally = true;
                }
            });

    private void Count(string reason, int victims)
    {
        lock (tally)
        {
            if (sealedTally)
            {
                Interlocked.Add(ref unaccounted, victims);
                return;
            }

            Expected.AddOrUpdate(reason, victims, (_, n) => n + victims);
        }
    }

    private static async Task<bool> Within(Task task, TimeSpan limit)
    {
        using var timeout = new CancellationTokenSource();
        var first = await Task.WhenAny(task, Task.Delay(limit, timeout.Token));
        await timeout.CancelAsync();
        return first == task;
    }

    private async Task RunInProcessVictimAsync(string name, string mode)
    {
        var options = client(name);
        // A hung peer never answers a Ping, not even after the clean step lets it read again to see its end.
        options.AnswerPings = mode != "silent";
        var connection = await GameConnection.ConnectAsync(options);

        // Victims that must leave nothing unread (FIN, half-close) stay out of rooms; the others play in one, so the
        // server is sending to them when they go.
        if (mode is "fin" or "half-close")
        {
            await connection.SendAsync(new Move(1, 1, 1));
        }
        else
        {
            await connection.SendAsync(new JoinRoom("chaos"));
            await WaitForUpdateAsync(connection);
        }

        switch (mode)
        {
            case "abort":
                await connection.CloseAsync(ClientCloseMode.Abort);
                break;
            case "close-with-unread":
                await connection.CloseAsync(ClientCloseMode.CloseWithUnread);
                break;
            case "fin":
                await connection.CloseAsync(ClientCloseMode.Fin);
                break;
            case "half-close":
                await connection.CloseAsync(ClientCloseMode.HalfClose);
                break;
            case "silent":
                silent.Add((connection, connection.CloseAsync(ClientCloseMode.Silent))); // completes when the server gives up on it
                break;
            default:
                await connection.GoodbyeAsync("chaos");
                break;
        }
    }

    private async Task RunBotVictimAsync(string name, string mode, CancellationToken cancellationToken)
    {
        var options = client(name);
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.ArgumentList.Add(botDll);
        string[] args = mode == "sigkill"
            ? ["--room", "chaos", "--moves", "5", "--move-interval-ms", "10", "--stop-reading", "--close", "silent"]
            : ["--room", "chaos", "--stop-reading", "--close", "exit-without-close"];
        foreach (var arg in new[]
        {
            "--host", options.Host, "--port", options.Port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--name", name, "--quiet",
            "--connections", botConnections.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "--transport", options.Transport,
        }.Concat(args))
        {
            info.ArgumentList.Add(arg);
        }

        using var process = Process.Start(info)!;
        bots[process] = 0;
        try
        {
            await DriveBotAsync(process, mode, cancellationToken);
        }
        finally
        {
            bots.TryRemove(process, out _);
            if (!process.HasExited)
            {
                // Stopped (the run was cut short) or timed out: a bot left behind would hold its connections open.
                process.Kill(entireProcessTree: true);
            }
        }
    }

    private static async Task DriveBotAsync(Process process, string mode, CancellationToken cancellationToken)
    {
        var ready = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data == "ready")
            {
                ready.TrySetResult();
            }
        };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        await ready.Task.WaitAsync(TimeSpan.FromSeconds(60), cancellationToken);
        if (mode == "sigkill")
        {
            // A few server ticks first, so room updates pile up unread on every connection the bot holds: the kernel
            // answers the death of a socket with unread data with RST, which is the case this mode is for.
            await Task.Delay(UnreadPileUp, cancellationToken);
            process.Kill(); // SIGKILL on Linux
        }

        await process.WaitForExitAsync(cancellationToken).WaitAsync(TimeSpan.FromSeconds(60), cancellationToken);
    }

    private static async Task WaitForUpdateAsync(GameConnection connection)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        while (await connection.Incoming.ReadAsync(timeout.Token) is not StateUpdate)
        {
        }
    }
}
