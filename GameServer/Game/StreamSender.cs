using DotNetty.Common.Concurrency;
using GameProtocol;
using TcpConnections;

namespace GameServer.Game;

/// <summary>
/// Serves one StreamRequest for a session: paced items on a schedule, or as fast as the peer takes them. It sends
/// through the session, so in version 2 every item is numbered and kept until acknowledged, and it produces only while
/// the session can take more: the connection is writable (a slow reader never makes the server queue the whole stream)
/// and the replay buffer has room (a stream never evicts its own unacknowledged items). A detached session's stream
/// goes on into its buffer up to its share (three quarters), and continues after the resume.
/// </summary>
public sealed class StreamSender
{
    /// <summary>Re-entered pumps one task may run before it yields the loop to its other channels.</summary>
    private const int MaxRoundsPerTask = 16;

    private readonly PlayerSession session;
    private readonly StreamRequest request;
    private readonly byte[] payload;
    private int next;
    private IScheduledTask? timer;
    private bool resumeQueued;
    private bool pumping;
    private bool pumpAgain;
    private bool stopped;
    private bool blocked;

    public StreamSender(PlayerSession session, StreamRequest request)
    {
        this.session = session;
        this.request = request;
        payload = new byte[request.PayloadBytes];
        for (var i = 0; i < payload.Length; i++)
        {
            payload[i] = (byte)i;
        }
    }

    public bool Finished => next >= request.Count;

    /// <summary>About what one item takes in the replay buffer: the payload and its envelope.</summary>
    private int ItemBytes => payload.Length + 48;

    /// <summary>Runs once, on the event loop, after the last item was written (not when stopped early).</summary>
    public Action? OnFinished { get; set; }

    public void Start() => Pump();

    /// <summary>Called on the connection's event loop when the channel became writable again.</summary>
    /// <remarks>
    /// On DotNetty 0.7.6's stock channel it pumps from a task of its own, not inside the writability event: that channel
    /// raises the event from RemoveBytes while it completes a send, outside its guard against re-entry, and a write and
    /// flush there re-enter its DoWrite, which then sends bytes twice and drops others. The epoll channel raises the event
    /// only inside its own flush, where pumping at once is safe; deferring there too was measured to delay other
    /// players' updates past a second with 100 streams to stalled readers on the loop (LimitTests, 1 run in 4).
    /// </remarks>
    public void Resume()
    {
        if (request.IntervalMs > 0)
        {
            return;
        }

        if (session.Connection is { } connection && SocketAccess.TryGetSocket(connection.Channel) is null)
        {
            Pump();
        }
        else
        {
            Wake();
        }
    }

    /// <summary>From any thread: the session can take more (the client acknowledged, or a resume attached it).</summary>
    public void Wake()
    {
        lock (session.Gate)
        {
            // A paced stream has its own timer; a wake only matters when that stopped for want of room.
            if (resumeQueued || stopped || Finished || (request.IntervalMs > 0 && !blocked))
            {
                return;
            }

            resumeQueued = true;
        }

        session.Executor.Execute(
            static s =>
            {
                var sender = (StreamSender)s!;
                lock (sender.session.Gate)
                {
                    sender.resumeQueued = false;
                }

                sender.Pump();
            },
            this);
    }

    public void Stop()
    {
        lock (session.Gate)
        {
            stopped = true;
            timer?.Cancel();
        }
    }

    private void Pump()
    {
        lock (session.Gate)
        {
            if (pumping)
            {
                // Re-entered from inside our own flush (epoll raises writability there): the outer pump goes round
                // once more, or the event that said "writable again" would be lost and the stream stall for good.
                pumpAgain = true;
                return;
            }

            if (stopped || Finished)
            {
                return;
            }

            pumping = true;
            try
            {
                var rounds = 0;
                do
                {
                    pumpAgain = false;
                    if (request.IntervalMs > 0)
                    {
                        PumpPaced();
                    }
                    else
                    {
                        PumpAsFastAsRead();
                    }
                }
                while (pumpAgain && request.IntervalMs == 0 && !stopped && !Finished && ++rounds < MaxRoundsPerTask);

                if (pumpAgain && !stopped && !Finished)
                {
                    pumpAgain = false;
                    Wake(); // a fast reader could keep one task pumping the whole stream: give the loop back
                }
            }
            finally
            {
                pumping = false;
            }
        }
    }

    private void PumpPaced()
    {
        // A paced item waits only for room in the replay buffer, not for writability: at its pace it cannot pile up.
        if (session.Status == SessionStatus.Ended)
        {
            stopped = true;
            return;
        }

        blocked = (session.Replay is { } replay && !replay.HasRoomFor(ItemBytes)) || (session.Connection is null && session.Replay is null);
        if (blocked)
        {
            return; // the acknowledgement that makes room, or the resume, wakes the stream
        }

        session.SendReliable(new StreamItem(next++, payload));
        if (Finished)
        {
            Complete();
            return;
        }

        timer = session.Executor.Schedule(static s => ((StreamSender)s!).Pump(), this, TimeSpan.FromMilliseconds(request.IntervalMs));
    }

    private void PumpAsFastAsRead()
    {
        if (session.Connection is { } current && !current.Channel.EventLoop.InEventLoop)
        {
            // Woken on a loop the session has left (a takeover): written from here, items would queue past the new
            // connection's flow control. The session's executor is the new connection's loop.
            Wake();
            return;
        }

        var wrote = false;
        while (!Finished && session.CanProduce(ItemBytes))
        {
            session.SendReliable(new StreamItem(next++, payload), flush: false);
            wrote = true;
        }

        if (wrote)
        {
            session.Flush();
            if (Finished)
            {
                Complete();
            }
        }
    }

    private void Complete()
    {
        var onFinished = OnFinished;
        OnFinished = null;
        onFinished?.Invoke();
    }
}
