using Microsoft.Extensions.Logging;

namespace LoadTests.Harness;

/// <summary>Who is running: the scenario and which copy of it.</summary>
public sealed record ScenarioInfo(string ScenarioName, int InstanceNumber)
{
    public string InstanceId => $"{ScenarioName}_{InstanceNumber}";
}

/// <summary>What an invocation sees, in NBomber's vocabulary.</summary>
public interface IScenarioContext
{
    ScenarioInfo ScenarioInfo { get; }

    /// <summary>Counts this copy's invocations from 1, as NBomber does.</summary>
    long InvocationNumber { get; }

    ILogger Logger { get; }

    CancellationToken ScenarioCancellationToken { get; }

    /// <summary>
    /// State for this invocation only, for its steps to hand things on: empty at the start of every invocation, as
    /// NBomber clears it, so nothing leaks from one iteration into the next by accident.
    /// </summary>
    Dictionary<string, object> Data { get; }

    /// <summary>State that lives as long as the copy (NBomber's <c>ScenarioInstanceData</c>), e.g. its connection.</summary>
    Dictionary<string, object> ScenarioInstanceData { get; }

    /// <summary>Records a step's outcome measured elsewhere (e.g. an update latency seen by a reader loop).</summary>
    void Record(string stepName, Response response, TimeSpan latency);
}

/// <summary>A scenario under construction: <c>Scenario.Create(name, run).WithLoadSimulations(…)</c>.</summary>
public sealed record ScenarioProps(string Name, Func<IScenarioContext, Task<Response>> Run)
{
    public Func<ILogger, Task>? Init { get; init; }

    public Func<ILogger, Task>? Clean { get; init; }

    public TimeSpan WarmUpDuration { get; init; }

    public IReadOnlyList<LoadSimulation> Simulations { get; init; } = [new LoadSimulation.KeepConstant(1, TimeSpan.FromSeconds(10))];

    public IReadOnlyList<Threshold> Thresholds { get; init; } = [];

    public ScenarioProps WithInit(Func<ILogger, Task> init) => this with { Init = init };

    public ScenarioProps WithClean(Func<ILogger, Task> clean) => this with { Clean = clean };

    public ScenarioProps WithWarmUpDuration(TimeSpan duration) => this with { WarmUpDuration = duration };

    public ScenarioProps WithoutWarmUp() => this with { WarmUpDuration = TimeSpan.Zero };

    public ScenarioProps WithLoadSimulations(params LoadSimulation[] simulations) => this with { Simulations = simulations };

    /// <summary>Bounds checked at every reporting interval of the run and at its end (NBomber's runtime thresholds).</summary>
    public ScenarioProps WithThresholds(params Threshold[] thresholds) => this with { Thresholds = [.. Thresholds, .. thresholds] };
}

/// <summary>The entry point of the NBomber-shaped API.</summary>
public static class Scenario
{
    public static ScenarioProps Create(string name, Func<IScenarioContext, Task<Response>> run) => new(name, run);
}

/// <summary>Runs a named step inside an invocation and records its latency and outcome on its own line.</summary>
public static class Step
{
    public static async Task<Response> Run(string name, IScenarioContext context, Func<Task<Response>> run)
    {
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        Response response;
        try
        {
            response = await run();
        }
        catch (OperationCanceledException) when (context.ScenarioCancellationToken.IsCancellationRequested)
        {
            throw; // the copy is being stopped by the load shape: not the step's failure, and the invocation is not counted either
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            response = Response.Fail(ex.GetType().Name, 0, ex.Message);
        }

        context.Record(name, response, System.Diagnostics.Stopwatch.GetElapsedTime(started));
        return response;
    }
}
