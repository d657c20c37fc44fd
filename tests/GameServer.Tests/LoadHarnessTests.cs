using System.Collections.Concurrent;
using System.Diagnostics;
using LoadTests.Harness;
using Microsoft.Extensions.Logging.Abstractions;

namespace GameServer.Tests;

/// <summary>The harness behaves as NBomber does where it uses NBomber's names: invocation numbers, ctx.Data, warm-up.</summary>
public sealed class LoadHarnessTests : IDisposable
{
    private readonly string folder = Path.Combine(Path.GetTempPath(), $"harness-{Guid.NewGuid():N}");

    public void Dispose()
    {
        if (Directory.Exists(folder))
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [Fact]
    public async Task InvocationNumber_StartsAt1_AndCountsEachCopysInvocations()
    {
        var seen = new ConcurrentDictionary<int, ConcurrentQueue<long>>();
        var scenario = Scenario.Create("numbers", async context =>
            {
                seen.GetOrAdd(context.ScenarioInfo.InstanceNumber, _ => new()).Enqueue(context.InvocationNumber);
                await Task.Delay(20, context.ScenarioCancellationToken);
                return Response.Ok();
            })
            .WithoutWarmUp()
            .WithLoadSimulations(new LoadSimulation.KeepConstant(2, TimeSpan.FromSeconds(1)));

        await RunAsync(scenario);

        Assert.Equal([0, 1], seen.Keys.Order());
        foreach (var numbers in seen.Values)
        {
            Assert.True(numbers.Count >= 5, $"only {numbers.Count} invocations");
            Assert.Equal(Enumerable.Range(1, numbers.Count).Select(n => (long)n), numbers);
        }
    }

    [Fact]
    public async Task Data_IsEmptyAtEveryInvocation_WhileScenarioInstanceDataLastsForTheCopy()
    {
        var dataLeftOver = 0;
        var counted = new ConcurrentDictionary<int, (long Invocation, int Count)>();
        var scenario = Scenario.Create("data", async context =>
            {
                if (context.Data.Count > 0)
                {
                    Interlocked.Increment(ref dataLeftOver);
                }

                context.Data["step"] = "set by this invocation";
                var count = (int)context.ScenarioInstanceData.GetValueOrDefault("count", 0) + 1;
                context.ScenarioInstanceData["count"] = count;
                counted[context.ScenarioInfo.InstanceNumber] = (context.InvocationNumber, count);
                await Task.Delay(20, context.ScenarioCancellationToken);
                return Response.Ok();
            })
            .WithoutWarmUp()
            .WithLoadSimulations(new LoadSimulation.KeepConstant(2, TimeSpan.FromSeconds(1)));

        await RunAsync(scenario);

        Assert.Equal(0, dataLeftOver);
        Assert.Equal(2, counted.Count);
        foreach (var (invocation, count) in counted.Values)
        {
            Assert.True(invocation >= 5, $"only {invocation} invocations");
            Assert.Equal(invocation, count); // every invocation of the copy saw the state its previous ones left
        }
    }

    [Fact]
    public async Task WarmUp_RunsTheSimulationsFromTheirStart_ThenTheMeasuredRunStartsThemAgain()
    {
        // A ramp to 20 copies over 4 s, a warm-up of 2 s: the warm-up reaches about 10 copies (not all 20), and the
        // measured run ramps again from none.
        var clock = Stopwatch.StartNew();
        var invocations = new ConcurrentQueue<(double At, int Instance)>();
        var scenario = Scenario.Create("ramp", async context =>
            {
                invocations.Enqueue((clock.Elapsed.TotalSeconds, context.ScenarioInfo.InstanceNumber));
                await Task.Delay(50, context.ScenarioCancellationToken);
                return Response.Ok();
            })
            .WithWarmUpDuration(TimeSpan.FromSeconds(2))
            .WithLoadSimulations(new LoadSimulation.RampingConstant(20, TimeSpan.FromSeconds(4)), new LoadSimulation.KeepConstant(20, TimeSpan.FromSeconds(0.5)));

        var result = await RunAsync(scenario);

        int MostCopies(double from, double to) => invocations.Where(i => i.At >= from && i.At < to).Select(i => i.Instance + 1).DefaultIfEmpty(0).Max();
        Assert.InRange(MostCopies(0, 1.9), 5, 11); // ramping during the warm-up, about 10 by its end
        Assert.InRange(MostCopies(2.3, 2.9), 1, 7); // 0.3 to 0.9 s into the measured ramp: a few copies again, not 10 or 20
        Assert.Equal(20, MostCopies(0, double.MaxValue)); // and the measured ramp reached its target
        var measured = result.Stats.Single(s => s.Step == "global").Ok;
        var warmUp = invocations.Count(i => i.At < 1.95);
        Assert.True(measured <= invocations.Count - warmUp, $"the statistics count {measured} invocations, more than the {invocations.Count - warmUp} after the warm-up");
    }

    [Fact]
    public void WarmUpPart_CutsARampWhereItWouldBe_NotAtItsTarget()
    {
        var ramp = new LoadSimulation.RampingConstant(20, TimeSpan.FromSeconds(4));
        var keep = new LoadSimulation.KeepConstant(20, TimeSpan.FromSeconds(10));

        var part = ScenarioRunner.WarmUpPart([ramp, keep], TimeSpan.FromSeconds(5));

        Assert.Equal(2, part.Count);
        Assert.Same(ramp, part[0]);
        Assert.Equal(new LoadSimulation.KeepConstant(20, TimeSpan.FromSeconds(1)), part[1]);
        var cut = Assert.Single(ScenarioRunner.WarmUpPart([ramp, keep], TimeSpan.FromSeconds(1)));
        Assert.Equal(TimeSpan.FromSeconds(1), cut.During);
        Assert.False(cut is LoadSimulation.RampingConstant); // not a ramp to 20 squeezed into 1 s
    }

    private async Task<RunResult> RunAsync(ScenarioProps scenario) =>
        await LoadRunner.RegisterScenarios(scenario)
            .WithReportFolder(folder)
            .WithGeneratorLagBound(10_000)
            .RunAsync(NullLogger.Instance, TextWriter.Null, CancellationToken.None)
            .WaitAsync(TimeSpan.FromMinutes(2));
}
