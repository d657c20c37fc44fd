using GameServer.Tests.Infrastructure;
using LoadTests.Harness;
using Microsoft.Extensions.Logging.Abstractions;

namespace GameServer.Tests;

/// <summary>
/// The load suite judges itself before it judges the server: a run whose own threads fell behind fails as "the load
/// generator was the bottleneck", and a run that kept up is not flagged.
/// </summary>
[Collection(LoadHarnessWarmUp.Collection)]
public class GeneratorProbeTests
{
    [Fact]
    public async Task ARunThatStarvesItsOwnThreadPool_FailsAsTheGeneratorBeingTheBottleneck()
    {
        // Copies that block pool threads, as a generator reading more connections than it has CPU for would keep them.
        var blocking = Scenario.Create("blocking", _ =>
            {
                Thread.Sleep(300);
                return Task.FromResult(Response.Ok());
            })
            .WithoutWarmUp()
            .WithLoadSimulations(new LoadSimulation.KeepConstant(4 * Environment.ProcessorCount + 16, TimeSpan.FromSeconds(3)));

        var result = await RunAsync(blocking);

        Assert.True(result.Generator.LagP99Ms > 50, $"the probe saw p99 {result.Generator.LagP99Ms} ms");
        Assert.Contains(result.BrokenThresholds, f => f.StartsWith("the load generator was the bottleneck", StringComparison.Ordinal));
    }

    [Fact]
    public async Task ARunThatKeptUp_IsNotFlagged()
    {
        var quiet = Scenario.Create("quiet", async context =>
            {
                await Task.Delay(10, context.ScenarioCancellationToken);
                return Response.Ok();
            })
            .WithoutWarmUp()
            .WithLoadSimulations(new LoadSimulation.KeepConstant(4, TimeSpan.FromSeconds(2)));

        var result = await RunAsync(quiet);

        Assert.DoesNotContain(result.BrokenThresholds, f => f.StartsWith("the load generator", StringComparison.Ordinal));
        Assert.True(result.Generator.CpuPercent >= 0);
    }

    private static async Task<RunResult> RunAsync(ScenarioProps scenario)
    {
        var folder = Path.Combine(Path.GetTempPath(), $"probe-{Guid.NewGuid():N}");
        try
        {
            return await LoadRunner.RegisterScenarios(scenario)
                .WithReportFolder(folder)
                .WithGeneratorLagBound(50)
                .RunAsync(NullLogger.Instance, TextWriter.Null, CancellationToken.None)
                .WaitAsync(TimeSpan.FromMinutes(2));
        }
        finally
        {
            if (Directory.Exists(folder))
            {
                Directory.Delete(folder, recursive: true);
            }
        }
    }
}
