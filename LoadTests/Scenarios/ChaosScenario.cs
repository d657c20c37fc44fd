using System.Collections.Concurrent;
using System.Diagnostics;
using GameClient;
using GameProtocol;
using LoadTests.Harness;

namespace LoadTests.Scenarios;

/// <summary>
/// The killer: while players play, victims join a room and are ended mid-stream in every way the close cases list,
/// in turn. In-process victims abort, close with unread data, FIN, half-close, go silent or say Goodbye; bot
/// processes exit without closing or are killed with SIGKILL. Each mode's expected server-side close reason is
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

    private readonly Func<string, GameClientOptions> client;
    private readonly string botDll;
    private readonly ConcurrentBag<GameConnection> silent = [];
    private long turn;

    public ChaosScenario(Func<string, GameClientOptions> client, string botDll)
    {
        this.client = client;
        this.botDll = botDll;
    }

    /// <summary>Expected server close reasons, per reason, for the victims ended so far.</summary>
    public ConcurrentDictionary<string, int> Expected { get; } = new(StringComparer.Ordinal);

    public ScenarioProps Create(LoadSimulation[] load) =>
        Scenario.Create("chaos", async context =>
            {
                var (mode, expected) = Modes[(int)(Interlocked.Increment(ref turn) - 1) % Modes.Length];
                var victim = $"chaos{context.ScenarioInfo.InstanceNumber}";
                if (mode is "exit-without-close" or "sigkill")
                {
                    await RunBotVictimAsync(victim, mode);
                }
                else
                {
                    await RunInProcessVictimAsync(victim, mode);
                }

                Expected.AddOrUpdate(expected, 1, (_, n) => n + 1);
                return Response.Ok(statusCode: mode);
            })
            .WithLoadSimulations(load)
            .WithoutWarmUp()
            .WithClean(async _ =>
            {
                foreach (var connection in silent)
                {
                    await connection.DisposeAsync();
                }
            });

    private async Task RunInProcessVictimAsync(string name, string mode)
    {
        var options = client(name);
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
                _ = connection.CloseAsync(ClientCloseMode.Silent); // completes when the server gives up on it
                silent.Add(connection);
                break;
            default:
                await connection.GoodbyeAsync("chaos");
                break;
        }
    }

    private async Task RunBotVictimAsync(string name, string mode)
    {
        var options = client(name);
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.ArgumentList.Add(botDll);
        string[] args = mode == "sigkill"
            ? ["--room", "chaos", "--moves", "5", "--move-interval-ms", "10", "--stop-reading", "--close", "silent"]
            : ["--room", "chaos", "--stop-reading", "--close", "exit-without-close"];
        foreach (var arg in new[] { "--host", options.Host, "--port", options.Port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--name", name, "--quiet" }.Concat(args))
        {
            info.ArgumentList.Add(arg);
        }

        using var process = Process.Start(info)!;
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
        await ready.Task.WaitAsync(TimeSpan.FromSeconds(60));
        if (mode == "sigkill")
        {
            process.Kill(); // SIGKILL on Linux
        }

        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60));
    }

    private static async Task WaitForUpdateAsync(GameConnection connection)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        while (await connection.Incoming.ReadAsync(timeout.Token) is not StateUpdate)
        {
        }
    }
}
