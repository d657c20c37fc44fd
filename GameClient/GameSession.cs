using System.Diagnostics;
using System.Threading.Channels;
using GameProtocol;
using GameProtocol.Pipeline;
using Microsoft.Extensions.Logging;

namespace GameClient;

/// <summary>A session's connection dropped; the session is trying to resume.</summary>
public sealed class SessionDisconnectedEventArgs(ClientCloseReport report) : EventArgs
{
    /// <summary>How the dropped connection ended, as this side saw it.</summary>
    public ClientCloseReport Report { get; } = report;
}

/// <summary>A session resumed on a new connection.</summary>
public sealed class SessionResumedEventArgs(int attempts, TimeSpan elapsed, int resent) : EventArgs
{
    /// <summary>Connections tried, this one included.</summary>
    public int Attempts { get; } = attempts;

    /// <summary>From the drop being noticed to the resume's Welcome.</summary>
    public TimeSpan Elapsed { get; } = elapsed;

    /// <summary>Own reliable messages sent again because the server had not received them.</summary>
    public int Resent { get; } = resent;
}

/// <summary>A session could not resume and is over.</summary>
public sealed class SessionResumeFailedEventArgs(string reason, Error? error) : EventArgs
{
    public string Reason { get; } = reason;

    /// <summary>The server's refusal, when it refused (its code says why); null when it could not be reached.</summary>
    public Error? Error { get; } = error;
}

/// <summary>
/// How a session ended. <c>Reason</c>: <c>goodbye</c> (this side's Goodbye), <c>disposed</c>, <c>server_goodbye</c>
/// (the server said Goodbye first: shutdown, a takeover by another resume), <c>server_error</c>, <c>resume_failed</c>,
/// <c>disconnected</c> (a drop with resume off) or <c>sequence_gap</c> (the server skipped a sequence number).
/// </summary>
public sealed record GameSessionEnd(string Reason, Goodbye? ServerGoodbye, Error? Error, ClientCloseReport? LastClose);

/// <summary>
/// A protocol version 2 session that survives its connections. Every reliable message it sends is numbered and kept
/// until the server acknowledges it; every reliable message it receives is delivered once, in order, to
/// <see cref="Incoming"/>, and acknowledged. When the connection drops (a reset, a FIN, a dead server found by the
/// heartbeat) it reconnects with exponential backoff and jitter and resumes: the server replays what this side has not
/// received, and this side resends what the server has not. The caller sees <see cref="Disconnected"/> and
/// <see cref="Resumed"/> and nothing else: no message lost, none twice. A Goodbye from the server that says
/// <c>reconnect</c> (a cluster gateway stopping) is a drop like the others. Any other Goodbye, an Error from the
/// server, a refused resume, or running out of attempts or of the resume window ends the session (<see cref="Ended"/>).
/// </summary>
public sealed class GameSession : IAsyncDisposable
{
    private readonly object gate = new();
    private readonly GameClientOptions options;
    private readonly ILogger? logger;
    private readonly Channel<IMessage> incoming = Channel.CreateUnbounded<IMessage>();
    private readonly Queue<(long Seq, IMessage Message)> unacknowledged = new();
    private readonly TaskCompletionSource<GameSessionEnd> ended = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly CancellationTokenSource lifetime = new();
    private readonly Timer ackTimer;
    private readonly List<GameConnection> abandoned = [];
    private GameConnection? connection;
    private Welcome welcome;
    private long lastSentSeq;
    private long lastReceivedSeq;
    private long lastAckSent;
    private bool ackScheduled;
    private bool closing;

    private GameSession(GameClientOptions options, ILogger? logger, GameConnection first)
    {
        this.options = options;
        this.logger = logger;
        welcome = first.Welcome!;
        ackTimer = new Timer(static s => ((GameSession)s!).SendDueAck(), this, Timeout.Infinite, Timeout.Infinite);
    }

    public event EventHandler<SessionDisconnectedEventArgs>? Disconnected;

    public event EventHandler<SessionResumedEventArgs>? Resumed;

    public event EventHandler<SessionResumeFailedEventArgs>? ResumeFailed;

    /// <summary>The newest Welcome (a resume's carries the new token).</summary>
    public Welcome Welcome
    {
        get
        {
            lock (gate)
            {
                return welcome;
            }
        }
    }

    public string SessionId => Welcome.SessionId;

    /// <summary>The connection that carries the session now; null while it reconnects or after it ended.</summary>
    public GameConnection? Connection
    {
        get
        {
            lock (gate)
            {
                return connection;
            }
        }
    }

    /// <summary>What the server sent, reliable messages unwrapped, each once and in order; completes when the session ends.</summary>
    public ChannelReader<IMessage> Incoming => incoming.Reader;

    /// <summary>Completes when the session is over, with how.</summary>
    public Task<GameSessionEnd> Ended => ended.Task;

    public long LastReceivedSeq => Interlocked.Read(ref lastReceivedSeq);

    public long LastSentSeq => Interlocked.Read(ref lastSentSeq);

    /// <summary>Own reliable messages the server has not acknowledged yet.</summary>
    public int Unacknowledged
    {
        get
        {
            lock (gate)
            {
                return unacknowledged.Count;
            }
        }
    }

    /// <summary>Reliable messages received again (replayed after a resume) and dropped.</summary>
    public long DuplicatesDropped { get; private set; }

    public int Resumes { get; private set; }

    /// <summary>Connects, says Hello with version 2 and starts the session.</summary>
    public static async Task<GameSession> ConnectAsync(GameClientOptions options, ILogger? logger = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        var own = options.Clone();
        own.ProtocolVersion = Framing.ProtocolVersion2;
        var first = await GameConnection.ConnectAsync(own, logger, cancellationToken);
        var session = new GameSession(own, logger, first);
        session.Start(first);
        return session;
    }

    /// <summary>
    /// Sends a message. A reliable one (Echo, JoinRoom, Move, StreamRequest) is numbered and kept until acknowledged:
    /// while the session is reconnecting it waits and goes out after the resume. Others (Ping) go only on a live connection.
    /// </summary>
    public Task SendAsync(IMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        Task write;
        lock (gate)
        {
            if (ended.Task.IsCompleted || closing)
            {
                throw new GameClientException("the session is over");
            }

            if (!Framing.IsReliable(message))
            {
                write = connection?.SendAsync(message) ?? Task.CompletedTask;
            }
            else
            {
                if (unacknowledged.Count >= options.MaxUnacknowledged)
                {
                    throw new GameClientException($"{unacknowledged.Count} reliable messages are unacknowledged (GameClientOptions.MaxUnacknowledged)");
                }

                var seq = Interlocked.Increment(ref lastSentSeq);
                unacknowledged.Enqueue((seq, message));

                // Written under the lock, so the wire order is the sequence order whoever calls.
                write = connection is { } live ? WriteReliable(live, seq, message) : Task.CompletedTask;
            }
        }

        return Quietly(write);
    }

    /// <summary>Leaves with the Goodbye handshake; returns the server's Goodbye (null when no connection was up).</summary>
    public async Task<Goodbye?> GoodbyeAsync(string reason = "bye")
    {
        GameConnection? live;
        lock (gate)
        {
            closing = true;
            live = connection;
        }

        if (live is null)
        {
            Finish(new GameSessionEnd("goodbye", null, null, null));
            return null;
        }

        try
        {
            var goodbye = await live.GoodbyeAsync(reason);
            Finish(new GameSessionEnd("goodbye", goodbye, null, await live.Closed));
            return goodbye;
        }
        finally
        {
            Finish(new GameSessionEnd("goodbye", null, null, live.Closed.IsCompletedSuccessfully ? live.Closed.Result : null));
        }
    }

    /// <summary>
    /// Ends the current connection in <paramref name="mode"/> as a network would, for tests and the load suite's
    /// chaos: the session then resumes on its own. <see cref="ClientCloseMode.Silent"/> abandons the socket without a
    /// word (a phone that changed networks: the old socket lingers, unread and unanswered) and reconnects at once, so
    /// the resume takes over a connection the server still thinks alive.
    /// </summary>
    public async Task DropConnectionAsync(ClientCloseMode mode)
    {
        GameConnection? live;
        lock (gate)
        {
            live = connection;
            if (live is null || closing)
            {
                return;
            }

            if (mode == ClientCloseMode.Silent)
            {
                connection = null; // its pump now ignores it, whatever happens to it
                abandoned.Add(live);
            }
        }

        if (mode != ClientCloseMode.Silent)
        {
            await live.CloseAsync(mode);
            return;
        }

        _ = live.CloseAsync(ClientCloseMode.Silent); // completes only when the server gives up on it
        var report = new ClientCloseReport(TcpConnections.CloseReason.LocalClose, 0, "abandoned", live.FramesReceived, live.FramesSent, null, null);
        Raise(Disconnected, new SessionDisconnectedEventArgs(report));
        await ReconnectOrEndAsync(report);
    }

    /// <summary>
    /// Ends the session: with the Goodbye handshake when a connection is up (a bare close would look like a drop, and
    /// the server would keep the seat for its resume window), then closes what is left.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        GameConnection? live;
        bool wasClosing;
        lock (gate)
        {
            wasClosing = closing;
            closing = true;
            live = connection;
            connection = null;

            // Abandoned and not yet taken over: on the server that socket still carries the session.
            if (live is null && abandoned.Count > 0)
            {
                live = abandoned[^1];
                abandoned.RemoveAt(abandoned.Count - 1);
                live.ResumeReading();
            }
        }

        try
        {
            if (live is not null)
            {
                if (!wasClosing && live.Channel.Active)
                {
                    try
                    {
                        await live.GoodbyeAsync("disposed");
                    }
                    catch (GameClientException)
                    {
                        // No answer in time: the close below is all that is left.
                    }
                }

                await live.DisposeAsync();
            }
        }
        finally
        {
            Finish(new GameSessionEnd("disposed", null, null, null));
            await DisposeAbandonedAsync();
            await ackTimer.DisposeAsync();
            lifetime.Dispose();
        }
    }

    private void Start(GameConnection next)
    {
        lock (gate)
        {
            connection = next;
        }

        _ = Task.Run(() => PumpAsync(next));
    }

    private async Task PumpAsync(GameConnection from)
    {
        Goodbye? serverGoodbye = null;
        Error? serverError = null;
        await foreach (var message in from.Incoming.ReadAllAsync())
        {
            lock (gate)
            {
                if (!ReferenceEquals(from, connection))
                {
                    continue; // an abandoned or replaced connection: its leftovers (a takeover's Goodbye, old states) are not the session's
                }
            }

            switch (message)
            {
                case Reliable reliable:
                    OnReliable(from, reliable);
                    serverError ??= reliable.Message as Error;
                    break;
                case Ack ack:
                    lock (gate)
                    {
                        Trim(ack.Received);
                    }

                    break;
                case Ping or Pong or GameProtocol.Welcome:
                    break; // the connection's heartbeat answers and consumes these
                case Goodbye goodbye:
                    serverGoodbye = goodbye;
                    incoming.Writer.TryWrite(goodbye);
                    break;
                case Error error:
                    serverError = error;
                    incoming.Writer.TryWrite(error);
                    break;
                default:
                    incoming.Writer.TryWrite(message);
                    break;
            }
        }

        var report = await from.Closed;
        try
        {
            await OnConnectionEndedAsync(from, report, serverGoodbye, serverError);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // Whatever went wrong, the session must not hang: it ends, and says why.
            Finish(new GameSessionEnd("resume_failed", null, null, report));
            if (logger is not null)
            {
                Log.ReconnectFailed(logger, SessionId, ex.Message);
            }
        }
    }

    private void OnReliable(GameConnection from, Reliable reliable)
    {
        lock (gate)
        {
            if (!ReferenceEquals(from, connection))
            {
                return;
            }

            Trim(reliable.Ack);
            if (reliable.Seq <= lastReceivedSeq)
            {
                DuplicatesDropped++;
                return;
            }

            if (reliable.Seq != lastReceivedSeq + 1)
            {
                // The server skipped a number: a broken server. Never deliver around a hole.
                if (logger is not null)
                {
                    Log.SequenceGap(logger, welcome.SessionId, reliable.Seq, lastReceivedSeq);
                }

                closing = true;
                _ = from.CloseAsync(ClientCloseMode.Abort);
                Finish(new GameSessionEnd("sequence_gap", null, null, null));
                return;
            }

            Interlocked.Exchange(ref lastReceivedSeq, reliable.Seq);
            incoming.Writer.TryWrite(reliable.Message);
            if (lastReceivedSeq - lastAckSent >= options.AckEveryMessages)
            {
                SendAckLocked();
            }
            else if (!ackScheduled)
            {
                ackScheduled = true;
                try
                {
                    ackTimer.Change(options.AckDelayMs, Timeout.Infinite);
                }
                catch (ObjectDisposedException)
                {
                    // Disposed meanwhile: nothing to acknowledge any more.
                }
            }
        }
    }

    private async Task OnConnectionEndedAsync(GameConnection from, ClientCloseReport report, Goodbye? serverGoodbye, Error? serverError)
    {
        bool resume;
        lock (gate)
        {
            if (!ReferenceEquals(from, connection))
            {
                return;
            }

            connection = null;
            if (closing)
            {
                return; // the Goodbye or the dispose that set it finishes the session
            }

            // A Goodbye ends the session, except one that asks this side to come back (a cluster gateway stopping).
            var toldToReconnect = serverGoodbye?.Reason == GameCloseReasons.Reconnect.Name;
            resume = (serverGoodbye is null || toldToReconnect) && serverError is null && options.ReconnectAttempts > 0
                && !string.IsNullOrEmpty(welcome.ResumeToken);
        }

        if (!resume)
        {
            var why = serverGoodbye is not null ? "server_goodbye" : serverError is not null ? "server_error" : "disconnected";
            Finish(new GameSessionEnd(why, serverGoodbye, serverError, report));
            return;
        }

        Raise(Disconnected, new SessionDisconnectedEventArgs(report));
        await ReconnectOrEndAsync(report);
    }

    /// <summary>Reconnects; whatever goes wrong, the session ends rather than hangs.</summary>
    private async Task ReconnectOrEndAsync(ClientCloseReport dropped)
    {
        try
        {
            await ReconnectAsync(dropped);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            Finish(new GameSessionEnd("resume_failed", null, null, dropped));
            if (logger is not null)
            {
                Log.ReconnectFailed(logger, SessionId, ex.Message);
            }
        }
    }

    private async Task ReconnectAsync(ClientCloseReport dropped)
    {
        var since = Stopwatch.StartNew();
        var window = TimeSpan.FromMilliseconds(options.ResumeWindowMs > 0 ? options.ResumeWindowMs : Welcome.ResumeWindowMs);
        CancellationToken stop;
        try
        {
            stop = lifetime.Token;
        }
        catch (ObjectDisposedException)
        {
            return; // disposed meanwhile
        }

        for (var attempt = 1; attempt <= options.ReconnectAttempts; attempt++)
        {
            var delay = Backoff(attempt);
            if (since.Elapsed + delay > window)
            {
                break;
            }

            try
            {
                await Task.Delay(delay, stop);
            }
            catch (OperationCanceledException)
            {
                return; // disposed meanwhile
            }

            string token;
            long has;
            lock (gate)
            {
                if (closing)
                {
                    return;
                }

                token = welcome.ResumeToken!;
                has = lastReceivedSeq;
            }

            GameConnection next;
            try
            {
                next = await GameConnection.ConnectAsync(options, token, has, logger, stop);
            }
            catch (GameClientException ex) when (ex.Error is { } refusal && IsFinal(refusal.Code))
            {
                Fail($"the server refused the resume: {refusal.Code}: {refusal.Message}", refusal, dropped);
                return;
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                if (stop.IsCancellationRequested)
                {
                    return; // ended by the caller meanwhile: not a failed resume
                }

                // Unreachable, refused for now (full, rate limited, or our own previous resume still holding the
                // seat with this token until the server finds it dead), or cut mid-handshake: try again.
                if (logger is not null)
                {
                    Log.ResumeAttemptFailed(logger, Welcome.SessionId, attempt, ex.Message);
                }

                continue;
            }

            if (!next.Welcome!.Resumed || next.Welcome.SessionId != SessionId || next.Welcome.LastReceivedSeq > LastSentSeq)
            {
                await next.DisposeAsync();
                Fail($"the server's answer is not a resume of session {SessionId}: {next.Welcome}", null, dropped);
                return;
            }

            int resent;
            lock (gate)
            {
                if (closing)
                {
                    // Closed while this attempt ran: leave properly, or the server would keep the seat for its window.
                    _ = Task.Run(async () =>
                    {
                        await Quietly(next.GoodbyeAsync("closed"));
                        await next.DisposeAsync();
                    });
                    return;
                }

                welcome = next.Welcome;
                Trim(next.Welcome.LastReceivedSeq);
                connection = next;
                resent = 0;
                foreach (var (seq, message) in unacknowledged)
                {
                    _ = Quietly(WriteReliable(next, seq, message));
                    resent++;
                }

                Resumes++;
            }

            _ = Task.Run(() => PumpAsync(next));
            Raise(Resumed, new SessionResumedEventArgs(attempt, since.Elapsed, resent));

            // The server has taken the session over from any socket this side abandoned: those can go now.
            _ = Task.Run(DisposeAbandonedAsync);
            return;
        }

        if (!stop.IsCancellationRequested)
        {
            Fail($"no resume within {options.ReconnectAttempts} attempts and {window.TotalMilliseconds:0} ms", null, dropped);
        }
    }

    private async Task DisposeAbandonedAsync()
    {
        GameConnection[] old;
        lock (gate)
        {
            old = [.. abandoned];
            abandoned.Clear();
        }

        await Task.WhenAll(old.Select(async abandonedConnection =>
        {
            // Read again first: the server's Goodbye("session_taken_over") is waiting there, the connection answers
            // it and the server closes. Closing unread would send an RST that can reach the server before its own
            // close of the old connection runs, and the server would record the reset instead of the takeover.
            abandonedConnection.ResumeReading();
            try
            {
                await abandonedConnection.Closed.WaitAsync(TimeSpan.FromMilliseconds(options.DrainTimeoutMs));
            }
            catch (TimeoutException)
            {
                // The server never closed it (it could not reach it either): close it ourselves.
            }

            await abandonedConnection.DisposeAsync();
        }));
    }

    /// <summary>
    /// Refusals no retry can change: the session is gone, its messages are, or the request is wrong. Others (the
    /// token is in use by a resume of ours that the server has not yet found dead, the server is full or limiting)
    /// may pass.
    /// </summary>
    private static bool IsFinal(string code) => code is ProtocolErrorCodes.ResumeUnknown or ProtocolErrorCodes.ResumeExpired
        or ProtocolErrorCodes.ResumeEnded or ProtocolErrorCodes.ResumeGap or ProtocolErrorCodes.InvalidArgument
        or ProtocolErrorCodes.UnsupportedVersion;

    private TimeSpan Backoff(int attempt)
    {
        // Exponential, capped, and drawn between half and all of it so that clients dropped together do not return together.
        var ceiling = Math.Min(options.ReconnectMaxDelayMs, options.ReconnectBaseDelayMs * Math.Pow(2, attempt - 1));
        return TimeSpan.FromMilliseconds(ceiling * (0.5 + (Random.Shared.NextDouble() * 0.5)));
    }

    private void Fail(string reason, Error? error, ClientCloseReport dropped)
    {
        Finish(new GameSessionEnd("resume_failed", null, error, dropped));
        Raise(ResumeFailed, new SessionResumeFailedEventArgs(reason, error));
    }

    /// <summary>A handler that throws must not stop the session's own work (it runs on the session's task).</summary>
    private void Raise<T>(EventHandler<T>? handler, T args)
    {
        try
        {
            handler?.Invoke(this, args);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            if (logger is not null)
            {
                Log.HandlerFailed(logger, SessionId, typeof(T).Name, ex);
            }
        }
    }

    private void Finish(GameSessionEnd end)
    {
        if (ended.TrySetResult(end))
        {
            incoming.Writer.TryComplete();
            lifetime.Cancel();
        }
    }

    /// <summary>The server has everything up to <paramref name="ack"/>. Under the lock.</summary>
    private void Trim(long ack)
    {
        while (unacknowledged.Count > 0 && unacknowledged.Peek().Seq <= ack)
        {
            unacknowledged.Dequeue();
        }
    }

    /// <summary>Under the lock: every Reliable carries our acknowledgement of the server's messages.</summary>
    private Task WriteReliable(GameConnection live, long seq, IMessage message)
    {
        lastAckSent = lastReceivedSeq;
        return live.SendAsync(new Reliable(seq, lastReceivedSeq, message));
    }

    private void SendDueAck()
    {
        lock (gate)
        {
            ackScheduled = false;
            if (lastAckSent < lastReceivedSeq)
            {
                SendAckLocked();
            }
        }
    }

    private void SendAckLocked()
    {
        if (connection is { } live)
        {
            lastAckSent = lastReceivedSeq;
            _ = Quietly(live.SendAsync(new Ack(lastReceivedSeq)));
        }
    }

    /// <summary>A write that fails because its connection died is not an error here: the message is resent on resume.</summary>
    private static async Task Quietly(Task write)
    {
        try
        {
            await write;
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // The drop is handled by the pump; the message stays in the unacknowledged queue until acknowledged.
        }
    }
}
