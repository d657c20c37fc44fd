using GameProtocol;

namespace GameClient.Bot;

/// <summary>
/// Runs a <see cref="BotPlan"/> and prints what happened. Lines that tests read: <c>welcome …</c>, <c>ready</c>
/// (everything before the close is done), <c>goodbye …</c> and the final <c>closed reason=… errno=…</c>.
/// </summary>
public sealed class Bot
{
    private readonly BotPlan plan;
    private readonly TextWriter output;
    private readonly Dictionary<string, long> received = new(StringComparer.Ordinal);
    private readonly TaskCompletionSource streamItemsSeen = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource readyToExit = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Task? closeGate;
    private readonly Dictionary<long, TaskCompletionSource> pendingEchoes = [];
    private StateUpdate? lastUpdate;
    private long streamItems;

    /// <param name="closeGate">
    /// For one of several bots in a process: the bot does not print <c>ready</c> itself and waits for this gate before
    /// it closes, so the process says <c>ready</c> once, when all of them are, and none ends before the others are set.
    /// </param>
    public Bot(BotPlan plan, TextWriter output, Task? closeGate = null)
    {
        this.plan = plan;
        this.output = output;
        this.closeGate = closeGate;
    }

    /// <summary>Completes when everything before the close is done (or the bot could not connect).</summary>
    public Task Ready => ready.Task;

    /// <summary>For one of several bots closing with exit-without-close: completes when the process may exit.</summary>
    public Task ReadyToExit => readyToExit.Task;

    public async Task<int> RunAsync(CancellationToken cancellationToken)
    {
        GameConnection connection;
        try
        {
            connection = await GameConnection.ConnectAsync(plan.Client, cancellationToken: cancellationToken);
        }
        catch (GameClientException ex)
        {
            await Console.Error.WriteLineAsync($"error: {ex.Message}");
            ready.TrySetException(ex);
            return 1;
        }

        await output.WriteLineAsync(
            $"welcome session={connection.Welcome!.SessionId} heartbeat_ms={connection.Welcome.HeartbeatIntervalMs} local={connection.LocalEndPoint}");
        var reader = Task.Run(() => ReadAsync(connection), CancellationToken.None);

        if (plan.Room is not null)
        {
            await connection.SendAsync(new JoinRoom(plan.Room));
        }

        for (var i = 1; i <= plan.Moves; i++)
        {
            await connection.SendAsync(new Move(i, i, -i));
            await Task.Delay(plan.MoveIntervalMs, cancellationToken);
        }

        for (var i = 1; i <= plan.Echoes; i++)
        {
            var answered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            lock (pendingEchoes)
            {
                pendingEchoes[i] = answered;
            }

            await connection.SendAsync(new Echo(i, [(byte)i, 1, 2, 3]));
            await answered.Task.WaitAsync(TimeSpan.FromSeconds(10), cancellationToken);
        }

        if (plan.StreamCount > 0)
        {
            await connection.SendAsync(new StreamRequest(plan.StreamCount, plan.StreamPayloadBytes, plan.StreamIntervalMs));
        }

        if (plan.WaitStreamItems > 0)
        {
            await streamItemsSeen.Task.WaitAsync(TimeSpan.FromSeconds(30), cancellationToken);
        }

        using var stopFlood = new CancellationTokenSource();
        var flooding = plan.Flood ? FloodAsync(connection, stopFlood.Token) : Task.CompletedTask;

        if (plan.StopReading)
        {
            await connection.PauseReadingUntilUnreadAsync(TimeSpan.FromSeconds(10));
        }

        if (!plan.Quiet)
        {
            await PrintReceivedAsync();
        }

        ready.TrySetResult();
        if (closeGate is null)
        {
            await output.WriteLineAsync("ready");
            await output.FlushAsync(cancellationToken);
        }
        else
        {
            await closeGate.WaitAsync(cancellationToken);
        }

        if (plan.HoldMs > 0)
        {
            // Holding the connection open; if it ends meanwhile (a dead server, a kick), report that at once.
            await Task.WhenAny(Task.Delay(plan.HoldMs, cancellationToken), connection.Closed);
        }

        if (connection.Closed.IsCompleted)
        {
            await stopFlood.CancelAsync();
            await flooding;
            await output.WriteLineAsync((await connection.Closed).ToString());
            return 0;
        }

        if (plan.Close == ClientCloseMode.ExitWithoutClose)
        {
            // The kernel resets a socket only if data sits unread when it closes it. Under load a receive posted
            // before the pause can still take what was unread when this bot said ready, so look again at the last
            // moment; the room's updates keep coming, and after that receive nothing takes them.
            if (plan.StopReading)
            {
                await connection.PauseReadingUntilUnreadAsync(TimeSpan.FromSeconds(10));
            }

            // The point of this mode: the kernel, not the program, closes the socket. One of several bots in a
            // process leaves the exit to the process, once all of them are set.
            if (closeGate is null)
            {
                Environment.Exit(0);
            }

            readyToExit.TrySetResult();
            await Task.Delay(Timeout.Infinite, cancellationToken);
        }

        if (plan.Close == ClientCloseMode.Goodbye)
        {
            await stopFlood.CancelAsync();
            await flooding;
            var goodbye = await connection.GoodbyeAsync();
            var lost = connection.FramesSent - goodbye.FramesReceived;
            await output.WriteLineAsync(
                $"goodbye server_received={goodbye.FramesReceived} client_sent={connection.FramesSent} lost={lost}");
        }

        var report = plan.Close == ClientCloseMode.Goodbye ? await connection.Closed : await connection.CloseAsync(plan.Close);
        await stopFlood.CancelAsync();
        await flooding;
        await reader;
        if (!plan.Quiet)
        {
            await PrintReceivedAsync();
        }

        await output.WriteLineAsync(report.ToString());
        return 0;
    }

    private async Task ReadAsync(GameConnection connection)
    {
        await foreach (var message in connection.Incoming.ReadAllAsync())
        {
            var name = message.GetType().Name;
            received[name] = received.GetValueOrDefault(name) + 1;
            switch (message)
            {
                case StateUpdate update:
                    lastUpdate = update;
                    break;
                case StreamItem:
                    if (++streamItems >= plan.WaitStreamItems)
                    {
                        streamItemsSeen.TrySetResult();
                    }

                    break;
                case Echo echo:
                    lock (pendingEchoes)
                    {
                        if (pendingEchoes.Remove(echo.Seq, out var answered))
                        {
                            answered.TrySetResult();
                        }
                    }

                    break;
                case Error error:
                    await output.WriteLineAsync($"server error {error.Code}: {error.Message}");
                    break;
            }
        }
    }

    private static async Task FloodAsync(GameConnection connection, CancellationToken cancellationToken)
    {
        long seq = 1_000_000;
        try
        {
            while (!cancellationToken.IsCancellationRequested && connection.Channel.Active)
            {
                await connection.SendAsync(new Move(seq++, 1, 1));
            }
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // The connection ended under the flood; the close report says how.
        }
    }

    private async Task PrintReceivedAsync()
    {
        var counts = string.Join(' ', received.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => $"{p.Key}={p.Value}"));
        await output.WriteLineAsync($"received {counts}");
        if (lastUpdate is not null)
        {
            var players = string.Join(", ", lastUpdate.Players.Select(p => $"{p.PlayerId}@({p.X:0.#},{p.Y:0.#})#{p.LastSeq}"));
            await output.WriteLineAsync($"last state tick={lastUpdate.Tick} players=[{players}]");
        }
    }
}
