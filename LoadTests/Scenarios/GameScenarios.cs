using GameClient;
using GameProtocol;
using LoadTests.Harness;

namespace LoadTests.Scenarios;

/// <summary>The shipped scenarios: <c>play</c> and <c>churn</c>.</summary>
public static class GameScenarios
{
    private static readonly byte[] EchoPayload = new byte[32];
    private static long goodbyes;
    private static CleanOutcome? lastClean;

    /// <summary>Goodbye handshakes completed by play and churn, to reconcile with the server's client_goodbye count.</summary>
    public static long Goodbyes => Interlocked.Read(ref goodbyes);

    internal static void CountGoodbye() => Interlocked.Increment(ref goodbyes);

    /// <summary>Resumes play's resumable players made (against a cluster, when a gateway they were on was killed).</summary>
    public static long PlayResumes => Interlocked.Read(ref playResumes);

    internal static void CountResumes(int resumes) => Interlocked.Add(ref playResumes, resumes);

    private static long playResumes;

    /// <summary>How <c>play</c>'s clean step went (null until it ran).</summary>
    public static CleanOutcome? PlayClean => Volatile.Read(ref lastClean);

    /// <summary>
    /// Players connect, join rooms of <paramref name="roomSize"/>, and each invocation sends a Move and makes an
    /// Echo round trip, paced at the client tick rate. StateUpdate lateness is recorded as the step
    /// <c>state_update</c>. Each copy keeps its connection across invocations and replaces it if it died.
    /// </summary>
    public static ScenarioProps Play(
        Func<string, GameClientOptions> client, int roomSize, TimeSpan tick, LoadSimulation[] load, TimeSpan warmUp, int cleanConcurrency, TimeSpan cleanDeadline, bool resumable = false)
    {
        var pool = new ClientPool<PlayerBot>(
            context => PlayerBot.ConnectAsync(
                client(context.ScenarioInfo.InstanceId),
                $"room{context.ScenarioInfo.InstanceNumber / roomSize}",
                lateness => context.Record("state_update", Response.Ok(), lateness),
                resumable),
            bot => bot.Ended,
            bot => bot.DisposeAsync());
        return Scenario.Create("play", async context =>
            {
                var bot = await pool.GetAsync(context);
                await Step.Run("move", context, async () =>
                {
                    // Bounded: a write to a wedged server never completes, and a copy stuck in it could not be stopped.
                    await bot.MoveAsync().WaitAsync(TimeSpan.FromSeconds(10), context.ScenarioCancellationToken);
                    return Response.Ok(sizeBytes: 24);
                });
                var echo = await Step.Run("echo", context, async () =>
                {
                    await bot.EchoAsync(EchoPayload, TimeSpan.FromSeconds(10)).WaitAsync(TimeSpan.FromSeconds(20), context.ScenarioCancellationToken);
                    return Response.Ok(sizeBytes: 2 * (EchoPayload.Length + 12));
                });
                await Task.Delay(tick, context.ScenarioCancellationToken);
                return echo;
            })
            .WithLoadSimulations(load)
            .WithWarmUpDuration(warmUp)
            .WithClean(async _ =>
            {
                var outcome = await pool.CloseAllAsync(cleanConcurrency, cleanDeadline);
                Volatile.Write(ref lastClean, outcome);
            });
    }

    /// <summary>
    /// Connect, play briefly, leave with the Goodbye handshake; an invocation fails with <c>lost_frames</c> unless the
    /// server's count equals what the client sent.
    /// </summary>
    public static ScenarioProps Churn(Func<string, GameClientOptions> client, LoadSimulation[] load) =>
        Scenario.Create("churn", async context =>
            {
                await using var connection = await GameConnection.ConnectAsync(client($"churn{context.ScenarioInfo.InstanceNumber}"));
                await connection.SendAsync(new JoinRoom($"churn{context.ScenarioInfo.InstanceNumber % 10}"));
                for (var i = 1; i <= 5; i++)
                {
                    await connection.SendAsync(new Move(i, i, i));
                }

                var goodbye = await connection.GoodbyeAsync("churn");
                CountGoodbye();
                return goodbye.FramesReceived == connection.FramesSent
                    ? Response.Ok(sizeBytes: connection.FramesSent)
                    : Response.Fail("lost_frames", 0, $"server received {goodbye.FramesReceived} of {connection.FramesSent}");
            })
            .WithLoadSimulations(load)
            .WithoutWarmUp();
}
