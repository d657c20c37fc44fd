using System.Diagnostics;

namespace LoadTests.Harness;

/// <summary>
/// Watches the load generator itself: a timer due every <see cref="Period"/> records how late it ran (the thread
/// pool that reads every connection is the one that runs it), and the process's CPU is read at both ends. When the
/// generator is the bottleneck, what it measures is its own lateness, not the server's: a run must say so instead of
/// passing or failing the server on it.
/// </summary>
public sealed class GeneratorProbe : IAsyncDisposable
{
    public static readonly TimeSpan Period = TimeSpan.FromMilliseconds(20);

    private readonly List<double> lagMs = [];
    private readonly CancellationTokenSource stop = new();
    private readonly Task loop;
    private readonly long startedAt = Stopwatch.GetTimestamp();
    private readonly TimeSpan cpuAtStart = Process.GetCurrentProcess().TotalProcessorTime;

    public GeneratorProbe() => loop = Task.Run(RunAsync);

    /// <summary>What was seen: lateness percentiles of the probe's timer and the generator's CPU share of the machine.</summary>
    public GeneratorLoad Snapshot()
    {
        double[] sorted;
        lock (lagMs)
        {
            sorted = [.. lagMs.Order()];
        }

        double At(double q) => sorted.Length == 0 ? 0 : sorted[Math.Min(sorted.Length - 1, (int)(sorted.Length * q))];
        var wall = Stopwatch.GetElapsedTime(startedAt);
        var cpu = Process.GetCurrentProcess().TotalProcessorTime - cpuAtStart;
        return new GeneratorLoad(At(0.5), At(0.99), sorted.Length == 0 ? 0 : sorted[^1], 100 * cpu / wall, Environment.ProcessorCount);
    }

    public async ValueTask DisposeAsync()
    {
        await stop.CancelAsync();
        await loop;
        stop.Dispose();
    }

    private async Task RunAsync()
    {
        using var timer = new PeriodicTimer(Period);
        var last = Stopwatch.GetTimestamp();
        try
        {
            while (await timer.WaitForNextTickAsync(stop.Token))
            {
                var now = Stopwatch.GetTimestamp();
                var late = Stopwatch.GetElapsedTime(last, now) - Period;
                last = now;
                lock (lagMs)
                {
                    lagMs.Add(Math.Max(0, late.TotalMilliseconds));
                }
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            // the run ended
        }
    }
}

/// <summary>The load generator's own state over a run.</summary>
/// <param name="CpuPercent">CPU time over wall time, in percent of one core (200 = two cores busy).</param>
public sealed record GeneratorLoad(double LagP50Ms, double LagP99Ms, double LagMaxMs, double CpuPercent, int Cores);
