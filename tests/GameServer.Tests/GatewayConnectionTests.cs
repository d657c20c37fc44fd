using System.Reflection;
using GameServer.Cluster;
using GameServer.Hosting;
using GameServer.Options;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Orleans;
using Xunit;

namespace GameServer.Tests;

/// <summary>
/// A gateway's client opens connections to the silos only by calling them, and grains reach the gateway's players
/// only through a connection it holds. A gateway whose players only listen, and whose silos all went, would hear
/// nothing more from the rooms that came back elsewhere: it must call in by itself when its last connection closes.
/// </summary>
public sealed class GatewayConnectionTests
{
    [Fact]
    public async Task AGatewayThatLostEveryConnectionToTheCluster_CallsInUntilTheClusterAnswers()
    {
        var client = new FakeClusterClient(failFirst: 2);
        using var services = Services(client);
        services.GetRequiredService<IClusterConnectionStatusObserver>().NotifyClusterConnectionLost();

        // Two failed calls one retry delay apart, then the one that answers.
        await client.Answered.Task.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(3, client.Calls);
        Assert.All(client.Grains, id => Assert.StartsWith("probe-", id, StringComparison.Ordinal));
    }

    [Fact]
    public async Task ASecondLossWhileTheGatewayIsCallingIn_IsAnsweredByTheSameCaller_WithOneMoreCall()
    {
        var held = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var client = new FakeClusterClient(failFirst: 0, holdFirst: held.Task);
        using var services = Services(client);
        var watch = services.GetRequiredService<IClusterConnectionStatusObserver>();
        watch.NotifyClusterConnectionLost();
        await client.Called.Task.WaitAsync(TimeSpan.FromSeconds(10));
        watch.NotifyClusterConnectionLost();

        await Task.Delay(TimeSpan.FromMilliseconds(300)); // what a second caller would take to call: none may
        Assert.Equal(1, client.Calls);
        held.SetResult();
        await client.Answered.Task.WaitAsync(TimeSpan.FromSeconds(10));

        // The loss that came while the first call was out is answered by one more call of the same caller: the
        // connection that first call opened may be the one that went.
        await WaitForCallsAsync(client, 2);
        await Task.Delay(TimeSpan.FromMilliseconds(300));
        Assert.Equal(2, client.Calls);
    }

    [Fact]
    public async Task ALossAfterTheGatewayCalledBackIn_IsCalledInForAgain()
    {
        var client = new FakeClusterClient(failFirst: 0);
        using var services = Services(client);
        var watch = services.GetRequiredService<IClusterConnectionStatusObserver>();
        watch.NotifyClusterConnectionLost();
        await WaitForCallsAsync(client, 1);
        await Task.Delay(TimeSpan.FromMilliseconds(100)); // the caller finishes after its call answered

        watch.NotifyClusterConnectionLost();
        await WaitForCallsAsync(client, 2);
    }

    [Fact]
    public async Task AStoppedGateway_DoesNotCallIn_WhenItsClientClosesItsConnections()
    {
        var client = new FakeClusterClient(failFirst: 0);
        using var services = Services(client);
        await services.GetRequiredService<Gateway>().StopAsync(CancellationToken.None);
        services.GetRequiredService<IClusterConnectionStatusObserver>().NotifyClusterConnectionLost();

        await Task.Delay(TimeSpan.FromMilliseconds(300)); // what a call would take to be made here: none may come
        Assert.Equal(0, client.Calls);
    }

    [Fact]
    public void LosingOneOfSeveralConnections_IsNoCauseToCallIn()
    {
        var client = new FakeClusterClient(failFirst: 0);
        using var services = Services(client);
        services.GetRequiredService<IClusterConnectionStatusObserver>().NotifyGatewayCountChanged(1, 2, connectionRecovered: false);
        Assert.Equal(0, client.Calls);
    }

    private static async Task WaitForCallsAsync(FakeClusterClient client, int calls)
    {
        var since = System.Diagnostics.Stopwatch.StartNew();
        while (client.Calls < calls)
        {
            Assert.True(since.Elapsed < TimeSpan.FromSeconds(10), $"{client.Calls} calls into the cluster, not {calls}");
            await Task.Delay(10);
        }
    }

    private static ServiceProvider Services(FakeClusterClient client)
    {
        var services = new ServiceCollection().AddMetrics();
        services.AddSingleton<GameServerMetrics>();
        services.AddSingleton<IClusterClient>(client.Proxy);
        services.AddSingleton(Microsoft.Extensions.Options.Options.Create(new ClusterModeOptions { GatewayId = "g1" }));
        services.AddSingleton(Microsoft.Extensions.Options.Options.Create(new ServerOptions()));
        services.AddSingleton<Microsoft.Extensions.Logging.ILogger<Gateway>>(NullLogger<Gateway>.Instance);
        services.AddSingleton<Gateway>();
        services.AddSingleton<IClusterConnectionStatusObserver, GatewayConnectionWatch>();
        return services.BuildServiceProvider();
    }

    /// <summary>
    /// The parts of a cluster client the gateway's call-in uses: session grains whose Resume fails the first
    /// <c>failFirst</c> times (as a call meeting no live silo does), then answers; and the observer reference its
    /// route carries.
    /// </summary>
    private sealed class FakeClusterClient
    {
        private readonly int failFirst;
        private readonly Task holdFirst;
        private int calls;

        public FakeClusterClient(int failFirst, Task? holdFirst = null)
        {
            this.failFirst = failFirst;
            this.holdFirst = holdFirst ?? Task.CompletedTask;
            Proxy = Make<IClusterClient>((method, args) => method.Name switch
            {
                nameof(IGrainFactory.GetGrain) when method.ReturnType == typeof(ISessionGrain) => SessionGrain((string)args![0]!),
                nameof(IGrainFactory.CreateObjectReference) => Make<IGatewayObserver>((_, _) => Task.CompletedTask),
                _ => throw new NotSupportedException(method.Name),
            });
        }

        public IClusterClient Proxy { get; }

        public int Calls => Volatile.Read(ref calls);

        public List<string> Grains { get; } = [];

        public TaskCompletionSource Answered { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public TaskCompletionSource Called { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        private ISessionGrain SessionGrain(string id)
        {
            lock (Grains)
            {
                Grains.Add(id);
            }

            return Make<ISessionGrain>((method, _) =>
            {
                if (method.Name != nameof(ISessionGrain.Resume))
                {
                    throw new NotSupportedException(method.Name);
                }

                var call = Interlocked.Increment(ref calls);
                Called.TrySetResult();
                if (call <= failFirst)
                {
                    return Task.FromException<SessionReply>(new TimeoutException("no live silo answered"));
                }

                return Answer(call == 1 ? holdFirst : Task.CompletedTask);
            });
        }

        private async Task<SessionReply> Answer(Task held)
        {
            await held;
            Answered.TrySetResult();
            return null!;
        }

        private static T Make<T>(Func<MethodInfo, object?[]?, object?> handler)
            where T : class
        {
            var proxy = DispatchProxy.Create<T, Handler>();
            ((Handler)(object)proxy).Invoked = handler;
            return proxy;
        }
    }

    public class Handler : DispatchProxy
    {
        public Func<MethodInfo, object?[]?, object?> Invoked { get; set; } = (_, _) => null;

        protected override object? Invoke(MethodInfo? targetMethod, object?[]? args) => Invoked(targetMethod!, args);
    }
}
