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

        public long InvocationNumber => 0;

        public ILogger Logger => NullLogger.Instance;

        public CancellationToken ScenarioCancellationToken => CancellationToken.None;

        public Dictionary<string, object> Data { get; } = [];

        public void Record(string stepName, Response response, TimeSpan latency) => Steps.Add(stepName);
    }
}
