using System.Buffers.Text;
using System.Diagnostics;
using System.Security.Cryptography;
using GameProtocol;
using GameProtocol.Pipeline;
using GameServer.Hosting;
using GameServer.Options;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using TcpConnections;

namespace GameServer.Game;

/// <summary>What became of a Hello with a resume token.</summary>
public readonly record struct ResumeOutcome(PlayerSession? Session, string Code, string Text, TcpConnection? TakenOver)
{
    public bool Resumed => Session is not null;
}

/// <summary>
/// Every session by its resume token: opens sessions, keeps a dropped version 2 session for its window, resumes it
/// (one winner per token; a connection that still carries it is taken over), and ends sessions for good. Remembers
/// for a while how each retired token ended, so a late resume gets the exact refusal. Lock order: a session's
/// <see cref="PlayerSession.Gate"/> before this store's own lock, never the other way.
/// </summary>
public sealed class SessionStore : IDisposable
{
    private const int TokenBytes = 24; // 192 random bits

    private readonly object gate = new();
    private readonly Dictionary<string, PlayerSession> byToken = new(StringComparer.Ordinal);
    private readonly HashSet<PlayerSession> sessions = [];
    private readonly Dictionary<string, string> retired = new(StringComparer.Ordinal);
    private readonly Queue<(string Token, long At)> retiredOrder = new();
    private readonly SessionOptions options;
    private readonly RoomManager rooms;
    private readonly GameServerMetrics metrics;
    private readonly TimeProvider time;
    private readonly ILogger<SessionStore> logger;
    private int detached;

    public SessionStore(IOptions<SessionOptions> options, RoomManager rooms, GameServerMetrics metrics, TimeProvider time, ILogger<SessionStore> logger)
    {
        this.options = options.Value;
        this.rooms = rooms;
        this.metrics = metrics;
        this.time = time;
        this.logger = logger;
        metrics.Meter.CreateObservableGauge("gameserver.sessions.detached", () => Detached, description: "Sessions waiting for a resume.");
        metrics.Meter.CreateObservableGauge("gameserver.sessions.buffered_bytes", () => BufferedBytes, unit: "By", description: "Bytes of unacknowledged reliable messages kept for replay.");
        metrics.Meter.CreateObservableGauge("gameserver.sessions.buffered_messages", () => BufferedMessages, description: "Unacknowledged reliable messages kept for replay.");
    }

    public SessionOptions Options => options;

    public int Detached => Volatile.Read(ref detached);

    public int Count
    {
        get
        {
            lock (gate)
            {
                return sessions.Count;
            }
        }
    }

    public long BufferedBytes => Snapshot().Sum(s => s.Replay?.Bytes ?? 0);

    public long BufferedMessages => Snapshot().Sum(s => (long)(s.Replay?.Count ?? 0));

    /// <summary>A new session for a Hello without a token (or any version 1 Hello).</summary>
    public PlayerSession Open(TcpConnection connection, string playerName, int protocolVersion)
    {
        var sessionId = $"{connection.Id}-{Guid.NewGuid():N}"[..24];
        var sequenced = protocolVersion >= Framing.ProtocolVersion2;
        var resumable = sequenced && options.ResumeEnabled;
        var session = new PlayerSession(
            connection,
            sessionId,
            playerName,
            protocolVersion,
            resumable ? new ReplayBuffer(options.MaxBufferedMessages, options.MaxBufferedBytes) : null,
            TimeSpan.FromMilliseconds(options.AckDelayMs));
        lock (gate)
        {
            sessions.Add(session);
            if (resumable)
            {
                session.ResumeToken = NewToken();
                byToken[session.ResumeToken] = session;
            }
            else if (sequenced)
            {
                session.ResumeToken = string.Empty; // version 2's Welcome says: no resume here
            }
        }

        return session;
    }

    /// <summary>
    /// A version 2 Hello with a token, on <paramref name="next"/>'s event loop. On success the session is attached to
    /// <paramref name="next"/>, and <paramref name="welcome"/>'s Welcome, every unacknowledged message after
    /// <paramref name="clientHas"/> and a fresh StateUpdate flagged as after a gap are on their way, in that order,
    /// before anything else of the session's.
    /// </summary>
    public ResumeOutcome TryResume(string token, long clientHas, TcpConnection next, Func<PlayerSession, Welcome> welcome)
    {
        PlayerSession? session;
        lock (gate)
        {
            if (!byToken.TryGetValue(token, out session))
            {
                return RefuseToken(token);
            }
        }

        int replayed;
        TcpConnection? previous;
        TimeSpan away;
        lock (session.Gate)
        {
            lock (gate)
            {
                // A racing resume may have won between the lookup and here.
                if (!byToken.TryGetValue(token, out var still) || !ReferenceEquals(still, session))
                {
                    return RefuseToken(token);
                }
            }

            var usingPrevious = token == session.PreviousToken;
            if (usingPrevious && session.Status == SessionStatus.Attached)
            {
                // The previous token is honoured only for a client that lost its Welcome: one whose resume connection
                // is gone. While that connection lives, this is the losing side of a race.
                return Refuse(ProtocolErrorCodes.ResumeTokenUsed);
            }

            if (clientHas < 0 || clientHas > session.LastSentSeq)
            {
                return Refuse(
                    ProtocolErrorCodes.InvalidArgument,
                    $"lastReceivedSeq {clientHas}, but the session sent {session.LastSentSeq} reliable messages");
            }

            if (session.Replay is not { } replay || !replay.CanReplayAfter(clientHas))
            {
                var lost = session.Replay?.LostThrough ?? 0;
                if (session.Status == SessionStatus.Detached)
                {
                    EndLocked(session, ProtocolErrorCodes.ResumeGap, "resume_gap"); // no resume can ever fill the hole
                }

                return Refuse(
                    ProtocolErrorCodes.ResumeGap,
                    $"the client has reliable messages up to {clientHas}, but those up to {lost} were dropped from the buffer (it holds {options.MaxBufferedMessages} messages or {options.MaxBufferedBytes} bytes)");
            }

            away = session.Status == SessionStatus.Detached ? Stopwatch.GetElapsedTime(session.DetachedAt) : TimeSpan.Zero;
            if (session.Status == SessionStatus.Detached)
            {
                Interlocked.Decrement(ref detached);
                session.ExpiryTimer?.Dispose();
                session.ExpiryTimer = null;
            }

            lock (gate)
            {
                // The token used now stays valid as the previous one until the client proves it got the new one.
                var retire = usingPrevious ? session.ResumeToken : session.PreviousToken;
                if (retire is not null)
                {
                    Retire(retire, ProtocolErrorCodes.ResumeTokenUsed);
                }

                session.PreviousToken = token;
                session.ResumeToken = NewToken();
                byToken[session.ResumeToken] = session;
            }

            previous = session.AttachTo(next);
            session.SendUnsequenced(welcome(session), flush: false);
            replayed = session.ReplayAfter(clientHas);
            if (session.Room is { } room)
            {
                session.SendUnsequenced(room.Snapshot(time.GetUtcNow().ToUnixTimeMilliseconds()), flush: false);
            }

            session.Flush();
            session.Stream?.Wake();
        }

        metrics.SessionResumed(away, replayed, previous is not null);
        Log.SessionResumed(logger, session.SessionId, next.Id, replayed, (long)away.TotalMilliseconds, previous?.Id ?? "-");
        if (session.Room is { } seat)
        {
            Log.PlayerBack(logger, session.SessionId, seat.Id);
            seat.AnnouncePresence(session); // says "back" only if the room was told "away"
        }

        return new ResumeOutcome(session, string.Empty, string.Empty, previous);
    }

    /// <summary>The client sent a frame after a resume's Welcome, so it holds the new token: the old one retires.</summary>
    public void Confirm(PlayerSession session, TcpConnection connection)
    {
        lock (session.Gate)
        {
            if (session.Confirmed || !ReferenceEquals(session.Connection, connection))
            {
                return;
            }

            session.Confirmed = true;
            if (session.PreviousToken is { } previous)
            {
                session.PreviousToken = null;
                lock (gate)
                {
                    Retire(previous, ProtocolErrorCodes.ResumeTokenUsed);
                }
            }
        }
    }

    /// <summary>
    /// <paramref name="connection"/> has closed. If it carried the session and the peer's side ended it (a reset, a
    /// FIN, a broken pipe, a timeout), a resumable session is kept for its window; otherwise the session ends.
    /// </summary>
    public void ConnectionClosed(PlayerSession session, TcpConnection connection)
    {
        if (KeepOrEnd(session, connection) is { } away)
        {
            away.AnnouncePresence(session); // outside the session's lock: it takes the others'
        }
    }

    /// <summary>Under the session's lock: keeps or ends it; returns the room it is now away from, if kept in one.</summary>
    private Room? KeepOrEnd(PlayerSession session, TcpConnection connection)
    {
        lock (session.Gate)
        {
            if (!ReferenceEquals(session.Connection, connection) || session.Status != SessionStatus.Attached)
            {
                return null; // taken over by a resume, or already ended
            }

            var reason = connection.Reason;
            if (session.Replay is not null && GameCloseReasons.IsResumable(reason) && TryCountDetached())
            {
                session.Detach();
                session.Stream?.Wake(); // a stream that waited for the socket goes on into the buffer
                var generation = session.Generation;
                session.ExpiryTimer = time.CreateTimer(
                    static s =>
                    {
                        var (store, expiring, gen) = ((SessionStore, PlayerSession, int))s!;
                        store.Expire(expiring, gen);
                    },
                    (this, session, generation),
                    options.ResumeWindow,
                    Timeout.InfiniteTimeSpan);
                Log.SessionKept(logger, session.SessionId, reason!.Name, options.ResumeWindowMs, session.Replay.Count);
                if (session.Room is { } room)
                {
                    Log.PlayerAway(logger, session.SessionId, room.Id);
                }

                return session.Room;
            }

            EndLocked(session, ProtocolErrorCodes.ResumeEnded, reason?.Name ?? "closed");
            return null;
        }
    }

    /// <summary>
    /// Ends a session for good on behalf of <paramref name="connection"/> (the client's Goodbye or a protocol error on
    /// it), if that connection still carries it: a resume that has just moved the session elsewhere wins.
    /// </summary>
    public void End(PlayerSession session, TcpConnection connection, string why)
    {
        lock (session.Gate)
        {
            if (session.Status == SessionStatus.Attached && ReferenceEquals(session.Connection, connection))
            {
                EndLocked(session, ProtocolErrorCodes.ResumeEnded, why);
            }
        }
    }

    public IReadOnlyList<PlayerSession> Snapshot()
    {
        lock (gate)
        {
            return [.. sessions];
        }
    }

    public void Dispose()
    {
        foreach (var session in Snapshot())
        {
            lock (session.Gate)
            {
                if (session.Status != SessionStatus.Ended)
                {
                    EndLocked(session, ProtocolErrorCodes.ResumeEnded, CloseReason.ServerShutdown.Name);
                }
            }
        }
    }

    /// <summary>Counts one more detached session unless that would pass the cap (atomically: drops come from every loop).</summary>
    private bool TryCountDetached()
    {
        if (Interlocked.Increment(ref detached) <= options.MaxDetachedSessions)
        {
            return true;
        }

        Interlocked.Decrement(ref detached);
        return false;
    }

    private void Expire(PlayerSession session, int generation)
    {
        lock (session.Gate)
        {
            if (session.Generation != generation || session.Status != SessionStatus.Detached)
            {
                return; // resumed (or ended) since the timer was set
            }

            EndLocked(session, ProtocolErrorCodes.ResumeExpired, GameCloseReasons.ResumeExpired.Name);
        }

        metrics.SessionExpired();
    }

    private void EndLocked(PlayerSession session, string tokenCode, string why)
    {
        if (session.Status == SessionStatus.Detached)
        {
            Interlocked.Decrement(ref detached);
        }

        var buffered = session.Replay?.Count ?? 0;
        session.Stream?.Stop();
        rooms.Leave(session);
        session.End();
        lock (gate)
        {
            sessions.Remove(session);
            foreach (var token in new[] { session.ResumeToken, session.PreviousToken })
            {
                if (!string.IsNullOrEmpty(token))
                {
                    Retire(token, tokenCode);
                }
            }
        }

        session.PreviousToken = null;
        Log.SessionEnded(logger, session.SessionId, why, session.MessagesHandled, session.State.LastSeq, session.LastReceivedSeq, buffered);
    }

    /// <summary>Under the store's lock: the token no longer resumes anything; a resume with it gets <paramref name="code"/>.</summary>
    private void Retire(string token, string code)
    {
        byToken.Remove(token);
        retired[token] = code;
        var now = Stopwatch.GetTimestamp();
        retiredOrder.Enqueue((token, now));

        // Remembered for a window (a client comes back within one or not at all), and never more than a bounded number.
        var keep = TimeSpan.FromMilliseconds(Math.Max(options.ResumeWindowMs, 1000));
        while (retiredOrder.Count > 0
            && (retiredOrder.Count > options.MaxDetachedSessions + 1000 || Stopwatch.GetElapsedTime(retiredOrder.Peek().At, now) > keep))
        {
            retired.Remove(retiredOrder.Dequeue().Token); // tokens are random: each is retired once
        }
    }

    /// <summary>Under the store's lock: a token that resumes nothing gets how it was retired, or unknown.</summary>
    private ResumeOutcome RefuseToken(string token) =>
        Refuse(retired.TryGetValue(token, out var code) ? code : ProtocolErrorCodes.ResumeUnknown);

    private ResumeOutcome Refuse(string code, string? detail = null)
    {
        metrics.ResumeRefused(code);
        var text = code switch
        {
            ProtocolErrorCodes.ResumeUnknown => "no session has this resume token",
            ProtocolErrorCodes.ResumeExpired => $"the session's resume window ({options.ResumeWindowMs} ms) passed",
            ProtocolErrorCodes.ResumeTokenUsed => "this resume token was already used; a resume gets a new one in its Welcome",
            ProtocolErrorCodes.ResumeEnded => "the session ended for good (Goodbye, protocol error or server decision)",
            _ => detail ?? code,
        };
        return new ResumeOutcome(null, code, text, null);
    }

    private static string NewToken() => Base64Url.EncodeToString(RandomNumberGenerator.GetBytes(TokenBytes));
}
