using System.Diagnostics;
using LoadTests;
using GameServer.Tests.Infrastructure;
using LoadTests.Harness;
using Microsoft.Extensions.Logging.Abstractions;

namespace GameServer.Tests;

/// <summary>Thresholds in NBomber's shape: checked during the run, at the end, and able to stop a run early.</summary>
[Collection(LoadHarnessWarmUp.Collection)]
public sealed class ThresholdTests : IDisposable
{
    private readonly TempFolder temp = new("thresholds");

    private string folder => temp.Path;

    public void Dispose() => temp.Dispose();

    [Fact]
    public async Task MaxFailPercentZero_PassesARunWithoutFailures()
    {
        var settings = new LoadSettings { MaxFailPercent = 0 };

        var result = await RunAsync(Paced("clean", _ => false, TimeSpan.FromSeconds(1)), settings.FailRateThreshold());

        var threshold = Assert.Single(result.Thresholds);
        Assert.Equal("fail rate at most 0 %", threshold.Description);
        Assert.True(threshold.HeldAtEnd);
        Assert.True(result.Passed, string.Join("; ", result.BrokenThresholds));
        Assert.True(result.Stats.Single(s => s.Step == "global").Ok > 0);
    }

    [Fact]
    public async Task MaxFailPercentZero_FailsARunWithOneFailureInMany()
    {
        var settings = new LoadSettings { MaxFailPercent = 0 };

        // The third invocation: early enough that even a slow machine gets there within the second.
        var result = await RunAsync(Paced("one-bad", n => n == 3, TimeSpan.FromSeconds(1)), settings.FailRateThreshold());

        Assert.Equal(1, result.Stats.Single(s => s.Step == "global").Fail);
        Assert.True(result.Stats.Single(s => s.Step == "global").Ok >= 2);
        Assert.False(Assert.Single(result.Thresholds).HeldAtEnd);
        Assert.Equal(["one-bad/global: fail rate at most 0 %"], result.BrokenThresholds);
    }

    [Fact]
    public async Task ThresholdBrokenMidRun_WithAnAbortCount_StopsTheRunEarly_AndTheVerdictNamesIt()
    {
        var failing = Paced("failing", _ => true, TimeSpan.FromSeconds(60))
            .WithThresholds(Threshold.Create(s => s.FailPercent <= 1, abortWhenErrorCount: 2, description: "fail rate at most 1 %"));
        var started = Stopwatch.GetTimestamp();

        var result = await RunAsync(failing);

        var elapsed = Stopwatch.GetElapsedTime(started);
        Assert.True(elapsed < TimeSpan.FromSeconds(15), $"a 60 s run aborted after two 200 ms checks took {elapsed}");
        var threshold = Assert.Single(result.Thresholds);
        Assert.True(threshold.AbortedRun);
        Assert.Equal(3, threshold.FailedChecks); // the two during the run that stopped it, then the end-of-run check
        Assert.Equal("failing/global: fail rate at most 1 %", result.AbortedBy);
        Assert.False(result.Passed);
        Assert.StartsWith("failing/global: fail rate at most 1 % (broken at 2 checks", result.BrokenThresholds[0], StringComparison.Ordinal); // when it stopped the run
        Assert.EndsWith("the run was stopped early)", result.BrokenThresholds[0], StringComparison.Ordinal);
    }

    [Fact]
    public async Task ThresholdOnAStep_IsCheckedDuringTheRun_WithoutStoppingItWhenItHasNoAbortCount()
    {
        var scenario = Scenario.Create("steps", async context =>
            {
                await Step.Run("slow", context, async () =>
                {
                    await Task.Delay(30, context.ScenarioCancellationToken);
                    return Response.Ok();
                });
                return Response.Ok();
            })
            .WithoutWarmUp()
            .WithLoadSimulations(new LoadSimulation.KeepConstant(2, TimeSpan.FromSeconds(1.5)))
            .WithThresholds(
                Threshold.Create("slow", s => s.P99Ms <= 5),
                Threshold.Create("slow", s => s.P99Ms <= 5_000));
        var started = Stopwatch.GetTimestamp();

        var result = await RunAsync(scenario);

        Assert.True(Stopwatch.GetElapsedTime(started) >= TimeSpan.FromSeconds(1.4), "a threshold without an abort count stopped the run");
        var broken = result.Thresholds.Single(t => t.Description == "s => s.P99Ms <= 5");
        Assert.Equal("slow", broken.Step);
        Assert.True(broken.FailedChecks >= 3, $"{broken.FailedChecks} of {broken.Checks} checks broke"); // during the run, not only at the end
        Assert.False(broken.AbortedRun);
        Assert.True(result.Thresholds.Single(t => t.Description == "s => s.P99Ms <= 5_000").Passed);
        Assert.Equal(["steps/slow: s => s.P99Ms <= 5"], result.BrokenThresholds);
    }

    [Fact]
    public async Task AnAbortedRun_StillRunsItsCleanStep_AndWritesEveryReport()
    {
        var cleaned = false;
        var failing = Paced("aborted", _ => true, TimeSpan.FromSeconds(60))
            .WithClean(_ =>
            {
                cleaned = true;
                return Task.CompletedTask;
            })
            .WithThresholds(Threshold.Create(s => s.FailPercent <= 1, abortWhenErrorCount: 1, description: "fail rate at most 1 %"));

        var result = await RunAsync(failing);

        Assert.Equal("aborted/global: fail rate at most 1 %", result.AbortedBy);
        Assert.True(cleaned);
        foreach (var report in new[] { "report.md", "report.txt", "report.json", "report.csv", "report.html" })
        {
            Assert.True(File.Exists(Path.Combine(result.ReportFolder, report)), $"{report} is missing");
        }

        Assert.Contains("stopped early by: aborted/global: fail rate at most 1 %", File.ReadAllText(Path.Combine(result.ReportFolder, "report.txt")), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Thresholds_AreNotCheckedDuringTheCleanStep_SoItCannotAbortARunThatEndedNormally()
    {
        // The predicate breaks once the clean step has begun; the clean step lasts several reporting intervals. Only
        // the end-of-run check may see it broken: no abort, one broken check.
        var cleaning = 0;
        // Two seconds of load: a cold test process (JIT, a thread pool of two) can take over half a second before its
        // first invocation completes, and a run that recorded nothing has no check to judge.
        var scenario = Paced("ended", _ => false, TimeSpan.FromSeconds(2))
            .WithClean(async _ =>
            {
                Volatile.Write(ref cleaning, 1);
                await Task.Delay(TimeSpan.FromSeconds(1.2)); // the clean step's own work, 6 reporting intervals long
            })
            .WithThresholds(Threshold.Create(_ => Volatile.Read(ref cleaning) == 0, abortWhenErrorCount: 1, description: "not cleaning"));

        var result = await RunAsync(scenario);

        var threshold = Assert.Single(result.Thresholds);
        Assert.False(threshold.AbortedRun);
        Assert.Null(result.AbortedBy);
        Assert.True(threshold.FailedChecks == 1, threshold.ToString()); // the end-of-run check
        Assert.False(threshold.HeldAtEnd);
    }

    /// <summary>Two copies, an invocation every 10 ms; the nth invocation of the run fails when <paramref name="fails"/>(n).</summary>
    private static ScenarioProps Paced(string name, Func<int, bool> fails, TimeSpan during)
    {
        var count = 0;
        return Scenario.Create(name, async context =>
            {
                await Task.Delay(10, context.ScenarioCancellationToken);
                return fails(Interlocked.Increment(ref count)) ? Response.Fail("bad") : Response.Ok();
            })
            .WithoutWarmUp()
            .WithLoadSimulations(new LoadSimulation.KeepConstant(2, during));
    }

    private async Task<RunResult> RunAsync(ScenarioProps scenario, params Threshold[] everyScenario) =>
        await LoadRunner.RegisterScenarios(scenario)
            .WithReportFolder(folder)
            .WithReportingInterval(TimeSpan.FromMilliseconds(200))
            .WithThresholds(everyScenario)
            .WithGeneratorLagBound(10_000) // this machine's load is not what these cases judge
            .RunAsync(NullLogger.Instance, TextWriter.Null, CancellationToken.None)
            .WaitAsync(TimeSpan.FromMinutes(2));
}
