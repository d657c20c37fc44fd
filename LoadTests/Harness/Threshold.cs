using System.Runtime.CompilerServices;

namespace LoadTests.Harness;

/// <summary>
/// A pass/fail bound on a scenario (its invocations, the step <c>global</c>) or on one of its steps, in NBomber's
/// shape: <c>Threshold.Create(stats =&gt; stats.FailPercent &lt;= 1)</c> or <c>Threshold.Create("echo", stats =&gt;
/// stats.P99Ms &lt;= 250)</c>, attached with <see cref="ScenarioProps.WithThresholds"/>. The runner checks it at every
/// reporting interval and once more at the end. A check that finds it broken counts toward
/// <see cref="AbortWhenErrorCount"/>: at that many broken checks the whole run stops early and fails.
/// </summary>
public sealed record Threshold
{
    private Threshold(string? stepName, Func<StepSnapshot, bool> predicate, string description)
    {
        StepName = stepName;
        Predicate = predicate;
        Description = description;
    }

    /// <summary>The step it bounds; null for the scenario's invocations (the step <c>global</c>).</summary>
    public string? StepName { get; }

    public Func<StepSnapshot, bool> Predicate { get; }

    /// <summary>What the report calls it: the predicate's source text unless a description was given.</summary>
    public string Description { get; }

    /// <summary>Broken checks after which the run is stopped and fails; null: never stops the run.</summary>
    public int? AbortWhenErrorCount { get; init; }

    /// <summary>Checks during the run start this long after the measured run began (the end-of-run check always runs).</summary>
    public TimeSpan StartCheckAfter { get; init; }

    /// <summary>The step a check reads: the named step, or <c>global</c> for the scenario's invocations.</summary>
    public string CheckedStep => StepName ?? ScenarioRunner.InvocationStep;

    /// <summary>A bound on the scenario's invocations.</summary>
    public static Threshold Create(
        Func<StepSnapshot, bool> predicate,
        int? abortWhenErrorCount = null,
        TimeSpan? startCheckAfter = null,
        [CallerArgumentExpression(nameof(predicate))] string description = "") =>
        Make(null, predicate, abortWhenErrorCount, startCheckAfter, description);

    /// <summary>A bound on one step of the scenario.</summary>
    public static Threshold Create(
        string stepName,
        Func<StepSnapshot, bool> predicate,
        int? abortWhenErrorCount = null,
        TimeSpan? startCheckAfter = null,
        [CallerArgumentExpression(nameof(predicate))] string description = "")
    {
        ArgumentException.ThrowIfNullOrEmpty(stepName);
        return Make(stepName, predicate, abortWhenErrorCount, startCheckAfter, description);
    }

    private static Threshold Make(string? step, Func<StepSnapshot, bool> predicate, int? abortWhenErrorCount, TimeSpan? startCheckAfter, string description)
    {
        ArgumentNullException.ThrowIfNull(predicate);
        if (abortWhenErrorCount is < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(abortWhenErrorCount), abortWhenErrorCount, "abortWhenErrorCount must be at least 1 (null: never abort)");
        }

        return new Threshold(step, predicate, description) { AbortWhenErrorCount = abortWhenErrorCount, StartCheckAfter = startCheckAfter ?? TimeSpan.Zero };
    }
}

/// <summary>How one threshold of one scenario fared over the run.</summary>
/// <param name="Checks">Checks that found data to judge (during the run and at its end).</param>
/// <param name="FailedChecks">Of those, the ones that found it broken (NBomber's error count).</param>
/// <param name="FirstFailedAtSeconds">Seconds into the measured run of the first broken check.</param>
/// <param name="HeldAtEnd">The end-of-run check's verdict; null when the step recorded nothing to judge.</param>
/// <param name="AbortedRun">Whether it reached its abort count and stopped the run.</param>
/// <param name="AbortWhenErrorCount">Broken checks at which it stops the run; null: never.</param>
/// <param name="ExceptionMessage">What the predicate threw, the first time it did (that check counts as broken, as NBomber's ExceptionMsg); null if it never threw.</param>
public sealed record ThresholdResult(
    string Scenario,
    string Step,
    string Description,
    int Checks,
    int FailedChecks,
    double? FirstFailedAtSeconds,
    bool? HeldAtEnd,
    bool AbortedRun,
    int? AbortWhenErrorCount,
    string? ExceptionMessage = null)
{
    /// <summary>
    /// The step recorded nothing by the end of the run, so nothing was judged: not a failure, but said in every report,
    /// since a bound that judged nothing may be one that was meant to judge something.
    /// </summary>
    public bool NoData => HeldAtEnd is null && !AbortedRun;

    /// <summary>
    /// Failed when the end-of-run check found it broken or it stopped the run. A break mid-run that the final
    /// numbers no longer show is reported (<see cref="FailedChecks"/>) but does not fail the run by itself: the
    /// statistics are cumulative, so the final check judges every sample, and an early check judges a handful.
    /// </summary>
    public bool Passed => HeldAtEnd != false && !AbortedRun;
}
