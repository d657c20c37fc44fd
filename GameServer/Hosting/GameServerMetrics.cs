using System.Diagnostics.Metrics;
using TcpConnections;

namespace GameServer.Hosting;

/// <summary>The <c>GameServer</c> meter: connection instruments plus the game's own.</summary>
public sealed class GameServerMetrics
{
    public const string MeterName = "GameServer";

    private readonly Counter<long> coalescedUpdates;
    private readonly Counter<long> sessionsResumed;
    private readonly Counter<long> sessionsExpired;
    private readonly Counter<long> sessionsTakenOver;
    private readonly Counter<long> resumesRefused;
    private readonly Counter<long> messagesReplayed;
    private readonly Histogram<double> resumeLatency;
    private readonly Counter<long> reliableHandled;
    private readonly Counter<long> reliableDuplicates;

    public GameServerMetrics(IMeterFactory meterFactory)
    {
        Meter = meterFactory.Create(MeterName);
        Connections = new ConnectionMetrics(Meter);
        coalescedUpdates = Meter.CreateCounter<long>(
            "gameserver.state_updates.coalesced",
            description: "StateUpdates not sent because the client was not writable; it gets the next tick's instead.");
        sessionsResumed = Meter.CreateCounter<long>("gameserver.sessions.resumed", description: "Sessions resumed on a new connection after a drop.");
        sessionsExpired = Meter.CreateCounter<long>(
            "gameserver.sessions.expired", description: "Sessions kept after a drop whose resume window passed unresumed (resume_expired).");
        sessionsTakenOver = Meter.CreateCounter<long>(
            "gameserver.sessions.taken_over", description: "Resumes that took a session over from a connection that still looked alive.");
        resumesRefused = Meter.CreateCounter<long>("gameserver.sessions.resume_refused", description: "Resumes refused, by Error code.");
        messagesReplayed = Meter.CreateCounter<long>("gameserver.sessions.replayed", description: "Reliable messages sent again on a resume.");
        reliableHandled = Meter.CreateCounter<long>(
            "gameserver.sessions.reliable_handled", description: "Reliable messages from version 2 clients handled (each sequence number once).");
        reliableDuplicates = Meter.CreateCounter<long>(
            "gameserver.sessions.reliable_duplicates", description: "Reliable messages from version 2 clients dropped as already handled (resent after a resume).");
        resumeLatency = Meter.CreateHistogram<double>(
            "gameserver.sessions.resume_latency",
            unit: "s",
            description: "From a session's drop to its resume.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60] });
    }

    public Meter Meter { get; }

    public ConnectionMetrics Connections { get; }

    public void SessionResumed(TimeSpan afterDrop, int replayed, bool tookOver)
    {
        sessionsResumed.Add(1);
        resumeLatency.Record(afterDrop.TotalSeconds);
        messagesReplayed.Add(replayed);
        if (tookOver)
        {
            sessionsTakenOver.Add(1);
        }
    }

    public void SessionExpired() => sessionsExpired.Add(1);

    public void ReliableReceived(Game.ReliableVerdict verdict)
    {
        if (verdict == Game.ReliableVerdict.Handle)
        {
            reliableHandled.Add(1);
        }
        else if (verdict == Game.ReliableVerdict.Duplicate)
        {
            reliableDuplicates.Add(1);
        }
    }

    /// <summary>
    /// A zero on every counter without labels (and the connection counters, by reason), so each series exists from the
    /// first scrape: see <see cref="ConnectionMetrics.StartAtZero"/>. The host calls it as it starts.
    /// </summary>
    public void StartAtZero(IEnumerable<CloseReason> applicationReasons)
    {
        Connections.StartAtZero(applicationReasons);
        foreach (var counter in new[] { coalescedUpdates, sessionsResumed, sessionsExpired, sessionsTakenOver, messagesReplayed, reliableHandled, reliableDuplicates })
        {
            counter.Add(0);
        }
    }

    public void ResumeRefused(string code) => resumesRefused.Add(1, new KeyValuePair<string, object?>("code", code));

    public void UpdatesCoalesced(int count)
    {
        if (count > 0)
        {
            coalescedUpdates.Add(count);
        }
    }
}
