using System.Diagnostics;
using LoadTests.Harness;

namespace LoadTests.Scenarios;

/// <summary>
/// Chaos for a cluster (<c>--cluster</c>): each invocation SIGKILLs the next part in turn (gateway1, silo1, gateway2,
/// silo2), then waits until the launcher has started it again and HAProxy sends to both gateways, and records that
/// time as the step <c>recovered</c>. One kill at a time: the cluster is never missing two parts. Before a gateway is
/// killed its counters are read (<paramref name="beforeKill"/>), so the run's totals keep what it counted.
/// </summary>
public sealed class KillScenario(ClusterTarget cluster, Func<string, Task> beforeKill) : IDisposable
{
    private static readonly string[] Victims = ["gateway1", "silo1", "gateway2", "silo2"];
    private static readonly TimeSpan Recovery = TimeSpan.FromSeconds(90);
    private readonly SemaphoreSlim one = new(1, 1);
    private int turn;

    /// <summary>Parts killed, by name.</summary>
    public Dictionary<string, int> Killed { get; } = new(StringComparer.Ordinal);

    public ScenarioProps Create(LoadSimulation[] load) =>
        Scenario.Create("kill", async context =>
            {
                await one.WaitAsync(context.ScenarioCancellationToken);
                try
                {
                    await cluster.WaitHealthyAsync(Recovery, context.ScenarioCancellationToken);
                    var victim = Victims[turn++ % Victims.Length];
                    await beforeKill(victim);
                    var killed = Stopwatch.GetTimestamp();
                    cluster.Kill(victim);
                    lock (Killed)
                    {
                        Killed[victim] = Killed.GetValueOrDefault(victim) + 1;
                    }

                    // Wait for the part to be gone first: until then the old process still counts as healthy. Its pid
                    // file names the dead process until the launcher has started the new one.
                    while (cluster.IsRunning(victim) && Stopwatch.GetElapsedTime(killed) < Recovery)
                    {
                        await Task.Delay(20, context.ScenarioCancellationToken);
                    }

                    await cluster.WaitHealthyAsync(Recovery, context.ScenarioCancellationToken);
                    context.Record("recovered", Response.Ok(statusCode: victim), Stopwatch.GetElapsedTime(killed));
                    return Response.Ok(statusCode: victim);
                }
                finally
                {
                    one.Release();
                }
            })
            .WithLoadSimulations(load)
            .WithoutWarmUp();

    public void Dispose() => one.Dispose();
}
