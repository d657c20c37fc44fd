using LoadTests.Harness;
using Microsoft.Extensions.Logging.Abstractions;

namespace GameServer.Tests.Infrastructure;

/// <summary>
/// One short run of the load harness before the cases that time it. In a cold test process the first run's own JIT
/// and a thread pool of two threads delay its first invocations by over half a second: a one-second case then records
/// almost nothing, and the generator probe rightly calls itself the bottleneck. The cases judge the harness, not the
/// test process's start.
/// </summary>
public sealed class LoadHarnessWarmUp : IAsyncLifetime
{
    public const string Collection = "load harness";

    public async Task InitializeAsync()
    {
        using var folder = new TempFolder("harness-warm-up");
        var closed = Scenario.Create("closed", async context =>
            {
                await Task.Delay(5, context.ScenarioCancellationToken);
                return Response.Ok();
            })
            .WithoutWarmUp()
            .WithLoadSimulations(new LoadSimulation.KeepConstant(4, TimeSpan.FromSeconds(1.5)))
            .WithThresholds(Threshold.Create(s => s.FailPercent <= 1, abortWhenErrorCount: 100));
        var open = Scenario.Create("open", async context =>
            {
                await Task.Delay(5, context.ScenarioCancellationToken);
                return Response.Ok();
            })
            .WithoutWarmUp()
            .WithLoadSimulations(new LoadSimulation.Inject(20, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1.5)));
        await LoadRunner.RegisterScenarios(closed, open)
            .WithReportFolder(folder.Path)
            .WithReportingInterval(TimeSpan.FromMilliseconds(200))
            .WithGeneratorLagBound(10_000)
            .RunAsync(NullLogger.Instance, TextWriter.Null, CancellationToken.None)
            .WaitAsync(TimeSpan.FromMinutes(1));
    }

    public Task DisposeAsync() => Task.CompletedTask;
}

/// <summary>The cases that time the load harness share <see cref="LoadHarnessWarmUp"/>.</summary>
[CollectionDefinition(LoadHarnessWarmUp.Collection)]
public sealed class LoadHarnessCollection : ICollectionFixture<LoadHarnessWarmUp>;
