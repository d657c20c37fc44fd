using HdrHistogram;

namespace LoadTests.Harness;

/// <summary>Counts and an HdrHistogram of latencies (microseconds) for one step of one scenario.</summary>
public sealed class StepStats
{
    private readonly object gate = new();
    private readonly LongHistogram latencies = new(TimeStamp.Hours(1), 3);
    private readonly Dictionary<string, long> statusCodes = new(StringComparer.Ordinal);
    private readonly List<Second> timeline = [];
    private long minMicros = long.MaxValue;

    public StepStats(string scenario, string step)
    {
        Scenario = scenario;
        Step = step;
    }

    public string Scenario { get; }

    public string Step { get; }

    public long Ok { get; private set; }

    public long Fail { get; private set; }

    public long Bytes { get; private set; }

    /// <summary>The longest timeline kept: a week of seconds. A second beyond it is counted but left off the timeline.</summary>
    public const int MaxTimelineSeconds = 7 * 24 * 3600;

    /// <summary>Seconds the timeline holds so far (the last one recorded in, plus one).</summary>
    public int TimelineSeconds
    {
        get
        {
            lock (gate)
            {
                return timeline.Count;
            }
        }
    }

    /// <summary>Records one outcome; <paramref name="second"/> is the second of the run it falls in (for the timeline).</summary>
    public void Record(Response response, TimeSpan latency, int second = 0)
    {
        var micros = Math.Clamp((long)latency.TotalMicroseconds, 1, TimeStamp.Hours(1));
        lock (gate)
        {
            // A second outside any plausible run (negative, or from a clock read against the wrong start) would
            // otherwise grow the timeline to it, one entry per second: counted in the totals, left off the timeline.
            if (second is >= 0 and < MaxTimelineSeconds)
            {
                while (timeline.Count <= second)
                {
                    timeline.Add(new Second());
                }

                var bucket = timeline[second];
                if (response.IsError)
                {
                    bucket.Fail++;
                }
                else
                {
                    bucket.Ok++;
                    bucket.Record(micros);
                }
            }

            if (response.IsError)
            {
                Fail++;
            }
            else
            {
                Ok++;
                latencies.RecordValue(micros);
                minMicros = Math.Min(minMicros, micros);
            }

            Bytes += response.SizeBytes;
            statusCodes[response.StatusCode] = statusCodes.GetValueOrDefault(response.StatusCode) + 1;
        }
    }

    /// <summary>
    /// Per second of the measured run: requests per second, failures per second and latency percentiles in
    /// milliseconds (NaN in a second with no successful request: nothing to plot, not zero latency). Each point's
    /// <see cref="TimelinePoint.Second"/> counts from the scenario's start, <paramref name="startSecond"/> being where
    /// the measured run began; a last second the run covered only partly is scaled to a rate, or left out when it
    /// covered less than a quarter of a second (too few samples to be a rate).
    /// </summary>
    public IReadOnlyList<TimelinePoint> Timeline(double startSecond = 0, double measuredSeconds = double.MaxValue)
    {
        lock (gate)
        {
            var points = new List<TimelinePoint>();
            for (var i = 0; i < timeline.Count; i++)
            {
                var b = timeline[i];
                var covered = Math.Min(1, measuredSeconds - i);
                if (covered < 0.25)
                {
                    break;
                }

                double P(double percentile) => b.Latencies is null ? double.NaN : b.Latencies.GetValueAtPercentile(percentile) / 1000.0;
                points.Add(new TimelinePoint(startSecond + i, b.Ok / covered, b.Fail / covered, P(50), P(95), P(99)));
            }

            return points;
        }
    }

    public StepSnapshot Snapshot(TimeSpan duration)
    {
        lock (gate)
        {
            double P(double percentile) => Ok == 0 ? 0 : latencies.GetValueAtPercentile(percentile) / 1000.0;
            return new StepSnapshot(
                Scenario,
                Step,
                Ok,
                Fail,
                duration.TotalSeconds > 0 ? (Ok + Fail) / duration.TotalSeconds : 0,
                Ok == 0 ? 0 : minMicros / 1000.0,
                Ok == 0 ? 0 : latencies.GetMean() / 1000.0,
                Ok == 0 ? 0 : latencies.GetMaxValue() / 1000.0,
                Ok == 0 ? 0 : latencies.GetStdDeviation() / 1000.0,
                P(50),
                P(75),
                P(95),
                P(99),
                P(99.9),
                Bytes,
                new Dictionary<string, long>(statusCodes, StringComparer.Ordinal));
        }
    }
}

/// <summary>One second of one step.</summary>
internal sealed class Second
{
    public long Ok { get; set; }

    public long Fail { get; set; }

    /// <summary>
    /// Up to a minute in microseconds, 2 significant digits (about 20 KB): made at the second's first success only, so
    /// seconds in which a step recorded nothing (a rare step's long gaps) cost a few bytes each.
    /// </summary>
    public LongHistogram? Latencies { get; private set; }

    public void Record(long micros) => (Latencies ??= new LongHistogram(TimeStamp.Minutes(1), 2)).RecordValue(Math.Min(micros, TimeStamp.Minutes(1)));
}

/// <summary>
/// One second of a step's timeline: successes and failures per second, and latencies in milliseconds of the requests
/// that succeeded in it (NaN when none did).
/// </summary>
public sealed record TimelinePoint(double Second, double Ok, double Fail, double P50Ms, double P95Ms, double P99Ms);

/// <summary>A step's per-second timeline.</summary>
public sealed record StepTimeline(string Scenario, string Step, IReadOnlyList<TimelinePoint> Points);

/// <summary>A step's numbers at one moment; latencies in milliseconds.</summary>
public sealed record StepSnapshot(
    string Scenario,
    string Step,
    long Ok,
    long Fail,
    double Rps,
    double MinMs,
    double MeanMs,
    double MaxMs,
    double StdDevMs,
    double P50Ms,
    double P75Ms,
    double P95Ms,
    double P99Ms,
    double P999Ms,
    long Bytes,
    IReadOnlyDictionary<string, long> StatusCodes)
{
    public double FailPercent => Ok + Fail == 0 ? 0 : 100.0 * Fail / (Ok + Fail);
}
