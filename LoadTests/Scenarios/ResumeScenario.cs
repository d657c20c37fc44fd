using System.Collections.Concurrent;
using System.Diagnostics;
using GameClient;
using GameProtocol;
using LoadTests.Harness;

namespace LoadTests.Scenarios;

/// <summary>
/// Resumable sessions under fire: each victim plays a protocol version 2 session (a room, Moves, Echoes and a paced
/// stream), loses its connection in one of the ways a network takes it, in turn, and resumes. It then checks from the
/// sequence numbers and payloads that every stream item and every Echo reply arrived exactly once and in order, and
/// that the room shows its last Move; an invocation with a loss or a duplicate fails. The run compares the server's
/// counts afterwards: sessions resumed, and reliable messages handled (each sequence number once) against what the
/// victims sent. The resume latency (drop to the resumed Welcome) is the step <c>resume</c>.
/// </summary>
public sealed class ResumeScenario
{
    private const int StreamItems = 200;
    private const int StreamIntervalMs = 5;
    private const int PayloadBytes = 64;
    private const int MovesPerHalf = 10;
    private const int EchoesPerHalf = 10;
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    private static readonly (string Mode, ClientCloseMode Drop, string ExpectedReason)[] Modes =
    [
        ("rst", ClientCloseMode.Abort, "peer_reset"),
        ("fin", ClientCloseMode.HalfClose, "peer_closed"),
        ("silent-drop", ClientCloseMode.Silent, "session_taken_over"),
    ];

    private readonly Func<string, GameClientOptions> client;
    private long turn;
    private long reliableSent;
    private long resumes;

    public ResumeScenario(Func<string, GameClientOptions> client) => this.client = client;

    /// <summary>Expected server close reasons for the victims' connections: the dropped one and the resumed one's Goodbye.</summary>
    public ConcurrentDictionary<string, int> Expected { get; } = new(StringComparer.Ordinal);

    /// <summary>Reliable messages the victims sent (their last sequence numbers), each to be handled exactly once.</summary>
    public long ReliableSent => Interlocked.Read(ref reliableSent);

    /// <summary>Resumes the victims saw.</summary>
    public long Resumes => Interlocked.Read(ref resumes);

    public ScenarioProps Create(LoadSimulation[] load) =>
        Scenario.Create("resume", async context =>
            {
                var (mode, drop, expected) = Modes[(int)(Interlocked.Increment(ref turn) - 1) % Modes.Length];
                var response = await RunVictimAsync(context, $"resume{context.ScenarioInfo.InstanceNumber}", mode, drop);
                Expected.AddOrUpdate(expected, 1, (_, n) => n + 1);
                return response;
            })
            .WithLoadSimulations(load)
            .WithoutWarmUp();

    private async Task<Response> RunVictimAsync(IScenarioContext context, string name, string mode, ClientCloseMode drop)
    {
        var options = client(name);
        options.ReconnectAttempts = 20;
        await using var session = await GameSession.ConnectAsync(options);
        var resumed = new TaskCompletionSource<SessionResumedEventArgs>(TaskCreationOptions.RunContinuationsAsynchronously);
        session.Resumed += (_, e) => resumed.TrySetResult(e);
        var seen = new Received(session.SessionId);
        var reading = Task.Run(() => seen.ReadAsync(session));

        await session.SendAsync(new JoinRoom($"resume{context.ScenarioInfo.InstanceNumber % 4}"));
        await session.SendAsync(new StreamRequest(StreamItems, PayloadBytes, StreamIntervalMs));
        await PlayHalfAsync(session, 1);
        await seen.ItemsAtLeastAsync(StreamItems / 5).WaitAsync(Patience);

        var dropped = Stopwatch.GetTimestamp();
        await session.DropConnectionAsync(drop);
        var back = await resumed.Task.WaitAsync(Patience);
        context.Record("resume", Response.Ok(statusCode: mode), Stopwatch.GetElapsedTime(dropped));
        Interlocked.Increment(ref resumes);

        await PlayHalfAsync(session, MovesPerHalf + 1);
        try
        {
            await seen.CompleteAsync(StreamItems, 2 * EchoesPerHalf, lastMove: 2 * MovesPerHalf).WaitAsync(Patience);
        }
        catch (TimeoutException)
        {
            // Say what is missing: the stream, the Echo answers, or the room's word on the last Move.
            return Response.Fail("incomplete_after_resume", 0, seen.Describe(StreamItems, 2 * EchoesPerHalf, 2 * MovesPerHalf));
        }
        var goodbye = await session.GoodbyeAsync("resume");
        Expected.AddOrUpdate("client_goodbye", 1, (_, n) => n + 1);
        Interlocked.Add(ref reliableSent, session.LastSentSeq);
        await reading;

        if (!seen.Items.SequenceEqual(Enumerable.Range(0, StreamItems)))
        {
            return Response.Fail("stream_not_exactly_once", 0, $"{seen.Items.Count} items, not 0..{StreamItems - 1} once each in order");
        }

        if (!seen.Echoes.Order().SequenceEqual(Enumerable.Range(1, 2 * EchoesPerHalf).Select(i => (long)i)))
        {
            return Response.Fail("echo_not_exactly_once", 0, $"Echo replies {string.Join(',', seen.Echoes)}");
        }

        return goodbye is { Reason: "client_goodbye" }
            ? Response.Ok(statusCode: mode, sizeBytes: back.Resent)
            : Response.Fail("no_goodbye", 0, $"the server answered {goodbye?.Reason ?? "nothing"}");
    }

    /// <summary>Moves and Echoes numbered from <paramref name="first"/>, Echo payloads carrying their own number.</summary>
    private static async Task PlayHalfAsync(GameSession session, int first)
    {
        for (var i = first; i < first + MovesPerHalf; i++)
        {
            await session.SendAsync(new Move(i, i, -i));
            await session.SendAsync(new Echo(i, [(byte)i]));
        }
    }

    /// <summary>What one victim received, checked as it arrives.</summary>
    private sealed class Received(string sessionId)
    {
        private readonly object gate = new();
        private readonly List<(int Items, int Echoes, long LastMove, TaskCompletionSource Done)> waiters = [];
        private long lastMoveSeen;

        public List<int> Items { get; } = [];

        public List<long> Echoes { get; } = [];

        public async Task ReadAsync(GameSession session)
        {
            await foreach (var message in session.Incoming.ReadAllAsync())
            {
                lock (gate)
                {
                    switch (message)
                    {
                        case StreamItem item when item.Payload.Length == PayloadBytes && item.Payload[^1] == (byte)(PayloadBytes - 1):
                            Items.Add(item.Index);
                            break;
                        case StreamItem item:
                            Items.Add(-1 - item.Index); // a damaged payload can never match the expected sequence
                            break;
                        case Echo echo when echo.Payload.Length == 1 && echo.Payload[0] == (byte)echo.Seq:
                            Echoes.Add(echo.Seq);
                            break;
                        case Echo echo:
                            Echoes.Add(-echo.Seq);
                            break;
                        case StateUpdate update:
                            lastMoveSeen = Math.Max(lastMoveSeen, update.Players.FirstOrDefault(p => p.PlayerId == sessionId)?.LastSeq ?? 0);
                            break;
                    }

                    foreach (var waiter in waiters.Where(w => Items.Count >= w.Items && Echoes.Count >= w.Echoes && lastMoveSeen >= w.LastMove))
                    {
                        waiter.Done.TrySetResult();
                    }
                }
            }
        }

        public Task ItemsAtLeastAsync(int items) => CompleteAsync(items, 0, 0);

        public string Describe(int items, int echoes, long lastMove)
        {
            lock (gate)
            {
                return $"after {Patience.TotalSeconds} s: stream items {Items.Count} of {items}, Echo answers {Echoes.Count} of {echoes}, last Move seen in a StateUpdate {lastMoveSeen} of {lastMove}";
            }
        }

        public Task CompleteAsync(int items, int echoes, long lastMove)
        {
            var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            lock (gate)
            {
                if (Items.Count >= items && Echoes.Count >= echoes && lastMoveSeen >= lastMove)
                {
                    done.TrySetResult();
                }
                else
                {
                    waiters.Add((items, echoes, lastMove, done));
                }
            }

            return done.Task;
        }
    }
}
