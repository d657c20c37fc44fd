namespace LoadTests.Harness;

/// <summary>
/// How much load a scenario gets over time, in NBomber's shapes. Closed models keep a number of copies looping;
/// open models start invocations at a rate whether or not earlier ones have finished.
/// </summary>
public abstract record LoadSimulation(TimeSpan During)
{
    /// <summary>Closed model: ramp linearly from the previous copies to <paramref name="Copies"/>.</summary>
    public sealed record RampingConstant(int Copies, TimeSpan During) : LoadSimulation(During);

    /// <summary>Closed model: hold <paramref name="Copies"/> copies.</summary>
    public sealed record KeepConstant(int Copies, TimeSpan During) : LoadSimulation(During);

    /// <summary>Open model: <paramref name="Rate"/> invocations every <paramref name="Interval"/>.</summary>
    public sealed record Inject(int Rate, TimeSpan Interval, TimeSpan During) : LoadSimulation(During);

    /// <summary>Open model: ramp linearly from the previous rate to <paramref name="Rate"/> per <paramref name="Interval"/>.</summary>
    public sealed record RampingInject(int Rate, TimeSpan Interval, TimeSpan During) : LoadSimulation(During);

    /// <summary>Nothing runs.</summary>
    public sealed record Pause(TimeSpan During) : LoadSimulation(During);

    /// <summary>The first <paramref name="During"/> of a ramp (a warm-up cut short): the load goes where the whole ramp would be by then.</summary>
    internal sealed record CutRamp(LoadSimulation Ramp, TimeSpan During) : LoadSimulation(During);

    public bool IsOpen => this is Inject or RampingInject || (this is CutRamp cut && cut.Ramp.IsOpen);
}
