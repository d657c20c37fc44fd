using System.Diagnostics.Metrics;

namespace TcpConnections;

/// <summary>
/// Where the connection handlers report what they count. Optional: without one they report to
/// <see cref="ConnectionMetrics.None"/>, which needs no <see cref="Meter"/>. Called on event loops, concurrently from
/// several: an implementation must be thread-safe.
/// </summary>
public interface IConnectionMetrics
{
    void Opened();

    /// <summary>Frames and bytes received since the last report (reported per read, not per frame).</summary>
    void Received(long frames, long bytes);

    /// <summary>Frames and bytes sent since the last report (reported per flush, not per frame).</summary>
    void Sent(long frames, long bytes);

    void Closed(ConnectionClosedEvent evt);

    /// <summary>A heartbeat round trip, Ping to its Pong.</summary>
    void RoundTrip(TimeSpan rtt);
}

/// <summary>
/// The connection instruments on a <see cref="Meter"/>. Names follow OpenTelemetry conventions under the meter's
/// name as prefix; a Prometheus exporter shows them as <c>gameserver_connections_closed_total{reason="peer_reset"}</c>
/// for a meter named <c>GameServer</c>.
/// </summary>
public sealed class ConnectionMetrics : IConnectionMetrics
{
    private readonly Counter<long> opened;
    private readonly UpDownCounter<long> active;
    private readonly Counter<long> closed;
    private readonly Histogram<double> duration;
    private readonly Counter<long> framesReceived;
    private readonly Counter<long> framesSent;
    private readonly Counter<long> bytesReceived;
    private readonly Counter<long> bytesSent;
    private readonly Histogram<double> roundTrip;
    private long activeCount;

    public ConnectionMetrics(Meter meter)
    {
        ArgumentNullException.ThrowIfNull(meter);
        var prefix = meter.Name.ToLowerInvariant();
        opened = meter.CreateCounter<long>($"{prefix}.connections.opened", description: "Connections accepted.");
        active = meter.CreateUpDownCounter<long>($"{prefix}.connections.active", description: "Connections open now.");
        closed = meter.CreateCounter<long>($"{prefix}.connections.closed", description: "Connections closed, by reason.");
        duration = meter.CreateHistogram<double>(
            $"{prefix}.connection.duration", unit: "s", description: "How long connections lived.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 600, 1800, 3600, 7200, 14400] });
        framesReceived = meter.CreateCounter<long>($"{prefix}.frames.received", description: "Frames decoded from peers.");
        framesSent = meter.CreateCounter<long>($"{prefix}.frames.sent", description: "Frames encoded for peers.");
        bytesReceived = meter.CreateCounter<long>($"{prefix}.bytes.received", description: "Bytes read from peers.");
        roundTrip = meter.CreateHistogram<double>(
            $"{prefix}.heartbeat.rtt", unit: "s", description: "Round-trip time from a heartbeat Ping to its Pong.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5] });
        bytesSent = meter.CreateCounter<long>($"{prefix}.bytes.sent", description: "Bytes written to peers (frame headers included).");
    }

    /// <summary>
    /// Records a zero on every counter, and on the closed counter for every core reason and every one of
    /// <paramref name="applicationReasons"/>, so that each series exists from the first scrape. Prometheus's
    /// <c>increase()</c> and <c>rate()</c> need a sample before the first close of a kind to see it (an alert on the
    /// first internal_error needs the 0 before the 1), and a dashboard shows 0 rather than no data. Call it once the
    /// meter's listeners are attached (a host's start): a measurement made before a listener exists is not seen by it.
    /// </summary>
    public void StartAtZero(IEnumerable<CloseReason> applicationReasons)
    {
        opened.Add(0);
        active.Add(0);
        framesReceived.Add(0);
        framesSent.Add(0);
        bytesReceived.Add(0);
        bytesSent.Add(0);
        foreach (var reason in CloseReason.Core.Concat(applicationReasons ?? []))
        {
            closed.Add(0, new KeyValuePair<string, object?>("reason", reason.Name));
        }
    }

    /// <summary>A sink that counts nothing and owns no meter.</summary>
    public static IConnectionMetrics None { get; } = new NoMetrics();

    /// <summary>Connections open now, as counted by this instance (the UpDownCounter cannot be read back).</summary>
    public long ActiveCount => Interlocked.Read(ref activeCount);

    public void Opened()
    {
        Interlocked.Increment(ref activeCount);
        opened.Add(1);
        active.Add(1);
    }

    public void Closed(ConnectionClosedEvent evt)
    {
        ArgumentNullException.ThrowIfNull(evt);
        Interlocked.Decrement(ref activeCount);
        active.Add(-1);
        closed.Add(1, new KeyValuePair<string, object?>("reason", evt.ReasonName));
        duration.Record(evt.Duration.TotalSeconds, new KeyValuePair<string, object?>("reason", evt.ReasonName));
    }

    public void Received(long frames, long bytes)
    {
        if (frames > 0)
        {
            framesReceived.Add(frames);
        }

        if (bytes > 0)
        {
            bytesReceived.Add(bytes);
        }
    }

    public void Sent(long frames, long bytes)
    {
        if (frames > 0)
        {
            framesSent.Add(frames);
        }

        if (bytes > 0)
        {
            bytesSent.Add(bytes);
        }
    }

    public void RoundTrip(TimeSpan rtt) => roundTrip.Record(rtt.TotalSeconds);

    private sealed class NoMetrics : IConnectionMetrics
    {
        public void Opened()
        {
        }

        public void Received(long frames, long bytes)
        {
        }

        public void Sent(long frames, long bytes)
        {
        }

        public void Closed(ConnectionClosedEvent evt)
        {
        }

        public void RoundTrip(TimeSpan rtt)
        {
        }
    }
}
