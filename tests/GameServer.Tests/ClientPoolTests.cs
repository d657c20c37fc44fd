using LoadTests.Harness;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace GameServer.Tests;

/// <summary>The load suite's client pool: a copy never gets a dead client back, and deaths are counted.</summary>
public class ClientPoolTests
{
    [Fact]
    public async Task DeadClient_IsReplacedOnNextGet_AndCountedOnce()
    {
        var opened = 0;
        var pool = new ClientPool<FakeClient>(
            _ => Task.FromResult(new FakeClient(Interlocked.Increment(ref opened))),
            client => client.End.Task,
            client =>
            {
                client.Disposed = true;
                return ValueTask.CompletedTask;
            });
        var context = new FakeContext(3);

        var first = await pool.GetAsync(context);
        Assert.Same(first, await pool.GetAsync(context)); // alive: the same client again
        Assert.Equal(0, pool.Died);

        first.End.SetResult(); // the server ended it
        Assert.Equal(1, pool.Died);
        Assert.Equal(0, pool.Replaced); // noticed, replaced only when the copy next asks

        var second = await pool.GetAsync(context);
        Assert.NotSame(first, second);
        Assert.Equal(2, second.Number);
        Assert.True(first.Disposed);
        Assert.Equal(1, pool.Replaced);
        Assert.Equal(["connect", "reconnect", "connect"], context.Steps);

        await pool.DisposeAsync();
        Assert.True(second.Disposed);
        second.End.SetResult(); // ended by the pool itself: not a death
        Assert.Equal(1, pool.Died);
        Assert.Equal(0, pool.Count);
    }

    [Fact]
    public async Task CloseAll_EndsClientsSideBySide_NoMoreThanTheConcurrencyAtOnce()
    {
        var inFlight = 0;
        var most = 0;
        var pool = new ClientPool<FakeClient>(
            context => Task.FromResult(new FakeClient(context.ScenarioInfo.InstanceNumber)),
            client => client.End.Task,
            async client =>
            {
                var now = Interlocked.Increment(ref inFlight);
                InterlockedMax(ref most, now);
                await Task.Delay(100); // a Goodbye handshake
                Interlocked.Decrement(ref inFlight);
                client.Disposed = true;
            });
        var clients = new List<FakeClient>();
        for (var i = 0; i < 200; i++)
        {
            clients.Add(await pool.GetAsync(new FakeContext(i)));
        }

        var outcome = await pool.CloseAllAsync(concurrency: 50, deadline: TimeSpan.FromSeconds(30));

        Assert.Equal(new CleanOutcome(200, 0, 0, outcome.Elapsed), outcome);
        Assert.All(clients, c => Assert.True(c.Disposed));
        Assert.InRange(most, 2, 50); // side by side, within the bound
        Assert.True(outcome.Elapsed < TimeSpan.FromSeconds(10), $"one after another would take 20 s; took {outcome.Elapsed}");
        Assert.Equal(0, pool.Count);
    }

    [Fact]
    public async Task CloseAll_StopsWaitingAtTheDeadline_AndReportsWhatDidNotFinish()
    {
        var hang = new TaskCompletionSource();
        var pool = new ClientPool<FakeClient>(
            context => Task.FromResult(new FakeClient(context.ScenarioInfo.InstanceNumber)),
            client => client.End.Task,
            async client =>
            {
                if (client.Number % 2 == 0)
                {
                    await hang.Task; // a peer that never answers the Goodbye
                }
                else if (client.Number == 1)
                {
                    throw new IOException("connection reset"); // a Goodbye that fails is counted, and loses nothing else
                }
            });
        for (var i = 0; i < 10; i++)
        {
            await pool.GetAsync(new FakeContext(i));
        }

        var outcome = await pool.CloseAllAsync(concurrency: 64, deadline: TimeSpan.FromMilliseconds(300)).WaitAsync(TimeSpan.FromSeconds(10));

        Assert.Equal(4, outcome.Closed);
        Assert.Equal(1, outcome.Failed);
        Assert.Equal(5, outcome.Unfinished);
        hang.SetResult();
    }

    private static void InterlockedMax(ref int target, int value)
    {
        var seen = Volatile.Read(ref target);
        while (value > seen && Interlocked.CompareExchange(ref target, value, seen) is var now && now != seen)
        {
            seen = now;
        }
    }

    [Fact]
    public async Task EachCopy_HasItsOwnSlot()
    {
        var pool = new ClientPool<FakeClient>(
            context => Task.FromResult(new FakeClient(context.ScenarioInfo.InstanceNumber)),
            client => client.End.Task,
            _ => ValueTask.CompletedTask);

        var a = await pool.GetAsync(new FakeContext(0));
        var b = await pool.GetAsync(new FakeContext(1));

        Assert.Equal(0, a.Number);
        Assert.Equal(1, b.Number);
        Assert.Equal(2, pool.Count);
    }

    private sealed class FakeClient(int number)
    {
        public int Number => number;

        public TaskCompletionSource End { get; } = new();

        public bool Disposed { get; set; }
    }

    private sealed class FakeContext(int instance) : IScenarioContext
    {
        public List<string> Steps { get; } = [];

        public ScenarioInfo ScenarioInfo { get; } = new("play", instance);

        public long InvocationNumber => 1;

        public ILogger Logger => NullLogger.Instance;

        public CancellationToken ScenarioCancellationToken => CancellationToken.None;

        public Dictionary<string, object> Data { get; } = [];

        public Dictionary<string, object> ScenarioInstanceData { get; } = [];

        public void Record(string stepName, Response response, TimeSpan latency) => Steps.Add(stepName);
    }
}
