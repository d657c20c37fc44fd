using GameProtocol;

namespace GameClient.Bot;

/// <summary>
/// Runs a <see cref="BotPlan"/> on a resumable session (<c>--resume</c>): connect, join, move, echo, stream, then the
/// Goodbye, across any number of drops. Lines that tests read: <c>welcome …</c>, <c>ready</c>, <c>disconnected …</c>,
/// <c>resumed …</c>, <c>resume_failed …</c>, <c>stream items=… exactly_once=…</c>, <c>echoes … exactly_once=…</c>
/// and <c>session_end …</c>. Exit code 0 only when everything arrived exactly once and the session ended with Goodbye.
/// </summary>
public sealed class ResumingBot
{
    private readonly BotPlan plan;
    private readonly TextWriter output;
    private readonly Task? closeGate;
    private readonly TaskCompletionSource ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource streamDone = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Dictionary<long, TaskCompletionSource> pendingEchoes = [];
    private readonly List<int> streamIndices = [];
    private readonly List<long> echoSeqs = [];

    public ResumingBot(BotPlan plan, TextWriter output, Task? closeGate = null)
    {
        this.plan = plan;
        this.output = output;
        this.closeGate = closeGate;
    }

    public Task Ready => ready.Task;

    public async Task<int> RunAsync(CancellationToken cancellationToken)
    {
        GameSession session;
        try
        {
            session = await GameSession.ConnectAsync(plan.Client, cancellationToken: cancellationToken);
        }
        catch (GameClientException ex)
        {
            await Console.Error.WriteLineAsync($"error: {ex.Message}");
            ready.TrySetException(ex);
            return 1;
        }

        await using (session)
        {
            session.Disconnected += (_, e) => Say($"disconnected {e.Report}");
            session.Resumed += (_, e) => Say($"resumed after_ms={e.Elapsed.TotalMilliseconds:0} attempts={e.Attempts} resent={e.Resent} local={session.Connection?.LocalEndPoint}");
            session.ResumeFailed += (_, e) => Say($"resume_failed code={e.Error?.Code ?? "-"} {e.Reason}");
            Say($"welcome session={session.SessionId} heartbeat_ms={session.Welcome.HeartbeatIntervalMs} resume_window_ms={session.Welcome.ResumeWindowMs} local={session.Connection?.LocalEndPoint}");
            var reader = Task.Run(() => ReadAsync(session), CancellationToken.None);

            if (plan.Room is not null)
            {
                await session.SendAsync(new JoinRoom(plan.Room));
            }

            for (var i = 1; i <= plan.Moves; i++)
            {
                await session.SendAsync(new Move(i, i, -i));
                await Task.Delay(plan.MoveIntervalMs, cancellationToken);
            }

            if (plan.StreamCount > 0)
            {
                await session.SendAsync(new StreamRequest(plan.StreamCount, plan.StreamPayloadBytes, plan.StreamIntervalMs));
            }

            ready.TrySetResult();
            if (closeGate is null)
            {
                Say("ready");
            }
            else
            {
                await closeGate.WaitAsync(cancellationToken);
            }

            // Echoes after "ready", so a test can cut the connection while they and the stream are in flight.
            var echoes = Task.WhenAll(Enumerable.Range(1, plan.Echoes).Select(async i =>
            {
                var answered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                lock (pendingEchoes)
                {
                    pendingEchoes[i] = answered;
                }

                await session.SendAsync(new Echo(i, [(byte)i]));
                await answered.Task;
            }));
            var stream = plan.StreamCount > 0 ? streamDone.Task : Task.CompletedTask;
            var everything = Task.WhenAll(echoes, stream);
            await Task.WhenAny(everything, session.Ended, Task.Delay(Math.Max(plan.HoldMs, 60_000), cancellationToken));

            if (plan.HoldMs > 0)
            {
                await Task.WhenAny(Task.Delay(plan.HoldMs, cancellationToken), session.Ended);
            }

            var complete = everything.IsCompletedSuccessfully;
            if (!session.Ended.IsCompleted)
            {
                await session.GoodbyeAsync();
            }

            var end = await session.Ended;
            await reader;
            var streamOnce = streamIndices.SequenceEqual(Enumerable.Range(0, plan.StreamCount));
            var echoesOnce = echoSeqs.Order().SequenceEqual(Enumerable.Range(1, plan.Echoes).Select(i => (long)i));
            Say($"stream items={streamIndices.Count} of={plan.StreamCount} exactly_once={Lower(streamOnce)}");
            Say($"echoes answered={echoSeqs.Count} of={plan.Echoes} exactly_once={Lower(echoesOnce)}");
            Say($"session_end reason={end.Reason} resumes={session.Resumes} duplicates_dropped={session.DuplicatesDropped} " +
                $"server_goodbye={end.ServerGoodbye?.Reason ?? "-"} error={end.Error?.Code ?? "-"}");
            return complete && streamOnce && echoesOnce && end.Reason == "goodbye" ? 0 : 1;
        }
    }

    private async Task ReadAsync(GameSession session)
    {
        await foreach (var message in session.Incoming.ReadAllAsync())
        {
            switch (message)
            {
                case StreamItem item:
                    streamIndices.Add(item.Index);
                    if (streamIndices.Count >= plan.StreamCount)
                    {
                        streamDone.TrySetResult();
                    }

                    break;
                case Echo echo:
                    echoSeqs.Add(echo.Seq);
                    lock (pendingEchoes)
                    {
                        if (pendingEchoes.Remove(echo.Seq, out var answered))
                        {
                            answered.TrySetResult();
                        }
                    }

                    break;
                case Error error:
                    Say($"server error {error.Code}: {error.Message}");
                    break;
            }
        }
    }

    private void Say(string line)
    {
        lock (output)
        {
            output.WriteLine(line);
            output.Flush();
        }
    }

    private static string Lower(bool value) => value ? "true" : "false";
}
