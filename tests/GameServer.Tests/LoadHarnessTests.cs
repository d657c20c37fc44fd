using System.Collections.Concurrent;
using System.Diagnostics;
using GameServer.Tests.Infrastructure;
using LoadTests.Harness;
using Microsoft.Extensions.Logging.Abstractions;

namespace GameServer.Tests;

/// <summary>The harness behaves as NBomber does where it uses NBomber's names: invocation numbers, ctx.Data, warm-up.</summary>
[Collection(LoadHarnessWarmUp.Collection)]
public sealed class LoadHarnessTests : IDisposable
{
    private readonly TempFolder temp = new("harness");

    private string folder => temp.Path;

    public void Dispose() => temp.Dispose();

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
        // measured run ramps again from none. Times are taken from the restart itself (copy 0's loop starting again
        // at invocation 1), not from a clock started before the runner: on a loaded machine the warm-up's own start
        // and stop can take far longer than planned.
        var clock = Stopwatch.StartNew();
        var invocations = new ConcurrentQueue<(double At, int Instance, long Invocation)>();
        var scenario = Scenario.Create("ramp", async context =>
            {
                invocations.Enqueue((clock.Elapsed.TotalSeconds, context.ScenarioInfo.InstanceNumber, context.InvocationNumber));
                await Task.Delay(50, context.ScenarioCancellationToken);
                return Response.Ok();
            })
            .WithWarmUpDuration(TimeSpan.FromSeconds(2))
            .WithLoadSimulations(new LoadSimulation.RampingConstant(20, TimeSpan.FromSeconds(4)), new LoadSimulation.KeepConstant(20, TimeSpan.FromSeconds(0.5)));

        var result = await RunAsync(scenario);

        var starts = invocations.Where(i => i.Instance == 0 && i.Invocation == 1).Select(i => i.At).Order().ToList();
        Assert.Equal(2, starts.Count); // copy 0 started twice: in the warm-up and in the measured run
        var restart = starts[1];
        int MostCopies(double from, double to) => invocations.Where(i => i.At >= from && i.At < to).Select(i => i.Instance + 1).DefaultIfEmpty(0).Max();
        Assert.InRange(MostCopies(0, restart), 3, 11); // ramping during the warm-up, about 10 by its end, never 20
        Assert.InRange(MostCopies(restart, restart + 0.8), 1, 8); // up to 0.8 s into the measured ramp: a few copies again (4 planned), not 10 or 20
        Assert.Equal(20, MostCopies(restart, double.MaxValue)); // and the measured ramp reached its target
        var measured = result.Stats.Single(s => s.Step == "global").Ok;
        var afterRestart = invocations.Count(i => i.At >= restart);
        Assert.True(measured <= afterRestart, $"the statistics count {measured} invocations, more than the {afterRestart} after the warm-up");
    }

    [Fact]
    public async Task ClosedCopiesAndOpenInvocations_NeverShareAnInstanceNumber_NorItsInstanceData()
    {
        // Three closed copies loop for 0.5 s, then an open model starts invocations. Every start of a copy or of an
        // open invocation is InvocationNumber 1: each must have a number of its own and find its
        // ScenarioInstanceData empty (one that found a closed copy's data shares its dictionary and its pool slot).
        var firsts = new ConcurrentQueue<(int Instance, int DataCount)>();
        var scenario = Scenario.Create("mixed", async context =>
            {
                if (context.InvocationNumber == 1)
                {
                    firsts.Enqueue((context.ScenarioInfo.InstanceNumber, context.ScenarioInstanceData.Count));
                }

                context.ScenarioInstanceData[$"invocation {context.InvocationNumber}"] = true;
                await Task.Delay(20, context.ScenarioCancellationToken);
                return Response.Ok();
            })
            .WithoutWarmUp()
            .WithLoadSimulations(new LoadSimulation.KeepConstant(3, TimeSpan.FromSeconds(0.5)), new LoadSimulation.Inject(10, TimeSpan.FromSeconds(0.1), TimeSpan.FromSeconds(0.5)));

        await RunAsync(scenario);

        Assert.True(firsts.Count > 3, $"{firsts.Count} starts: the open model started nothing");
        Assert.Equal(firsts.Count, firsts.Select(f => f.Instance).Distinct().Count()); // one counter for both models
        Assert.All(firsts, f => Assert.Equal(0, f.DataCount));
    }

    [Fact]
    public void StepStats_ASecondFarFromTheStart_CountsWithoutGrowingATimelineOfHistograms()
    {
        var stats = new StepStats("s", "step");
        stats.Record(Response.Ok(), TimeSpan.FromMilliseconds(1), second: 0);
        var before = GC.GetAllocatedBytesForCurrentThread();

        // Seconds counted from timestamp 0 are the machine's uptime: tens of thousands.
        stats.Record(Response.Ok(), TimeSpan.FromMilliseconds(1), second: 10_000);
        stats.Record(Response.Ok(), TimeSpan.FromMilliseconds(1), second: int.MaxValue - 1);
        stats.Record(Response.Ok(), TimeSpan.FromMilliseconds(1), second: -5);

        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(allocated < 20_000_000, $"{allocated:N0} bytes for three records"); // one histogram per second would be 200 MB
        Assert.Equal(10_001, stats.TimelineSeconds); // the week-long cap and the negative second left the timeline alone
        Assert.Equal(4, stats.Snapshot(TimeSpan.FromSeconds(1)).Ok); // all four still counted
    }

    [Fact]
    public async Task CopiesThatIgnoreTheirStop_AreReportedAfterTheStopLimit_AndTheRunEnds()
    {
        var never = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var scenario = Scenario.Create("stuck", async _ =>
            {
                started.TrySetResult();
                await never.Task; // a write to a wedged server: it ignores the cancellation token
                return Response.Ok();
            })
            .WithoutWarmUp()
            .WithLoadSimulations(new LoadSimulation.KeepConstant(2, TimeSpan.FromSeconds(0.3)));
        try
        {
            var result = await LoadRunner.RegisterScenarios(scenario)
                .WithReportFolder(folder)
                .WithGeneratorLagBound(10_000)
                .WithStopLimit(TimeSpan.FromMilliseconds(300))
                .RunAsync(NullLogger.Instance, TextWriter.Null, CancellationToken.None)
                .WaitAsync(TimeSpan.FromMinutes(1));

            Assert.True(started.Task.IsCompleted);
            Assert.Contains("stuck: 2 copies had not stopped 0.3 s after being told to (not waited on further)", result.BrokenThresholds);
            Assert.False(result.Passed);
            Assert.True(File.Exists(Path.Combine(result.ReportFolder, "report.json")));
        }
        finally
        {
            never.TrySetResult();
        }
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
