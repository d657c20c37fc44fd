using DotNetty.Common.Concurrency;
using DotNetty.Transport.Channels;
using GameProtocol;
using TcpConnections;

namespace GameServer.Game;

/// <summary>
/// Serves one StreamRequest on the connection's event loop: paced items on a schedule, or as fast as the peer
/// reads (it pauses while the channel is not writable and resumes on the writability change, so a slow reader
/// never makes the server queue the whole stream in memory).
/// </summary>
public sealed class StreamSender
{
    private readonly IChannelHandlerContext context;
    private readonly TcpConnection connection;
    private readonly StreamRequest request;
    private readonly byte[] payload;
    private int next;
    private IScheduledTask? timer;
    private bool resumeQueued;

    public StreamSender(IChannelHandlerContext context, TcpConnection connection, StreamRequest request)
    {
        this.context = context;
        this.connection = connection;
        this.request = request;
        payload = new byte[request.PayloadBytes];
        for (var i = 0; i < payload.Length; i++)
        {
            payload[i] = (byte)i;
        }
    }

    public bool Finished => next >= request.Count;

    /// <summary>Runs once, on the event loop, after the last item was written (not when stopped early).</summary>
    public Action? OnFinished { get; set; }

    public void Start() => Pump();

    /// <summary>Called on the event loop when the channel became writable again.</summary>
    /// <remarks>
    /// On DotNetty 0.7.6's stock channel it pumps from a task of its own, not inside the writability event: that channel
    /// raises the event from RemoveBytes while it completes a send, outside its guard against re-entry, and a write and
    /// flush there re-enter its DoWrite, which then sends bytes twice and drops others. The epoll channel raises the event
    /// only inside its own flush, where pumping at once is safe; deferring there too was measured to delay other
    /// players' updates past a second with 100 streams to stalled readers on the loop (LimitTests, 1 run in 4).
    /// </remarks>
    public void Resume()
    {
        if (request.IntervalMs == 0 && SocketAccess.TryGetSocket(context.Channel) is null)
        {
            Pump();
        }
        else if (request.IntervalMs == 0 && !resumeQueued)
        {
            resumeQueued = true;
            context.Executor.Execute(
                static s =>
                {
                    var sender = (StreamSender)s!;
                    sender.resumeQueued = false;
                    sender.Pump();
                },
                this);
        }
    }

    public void Stop()
    {
        timer?.Cancel();
        next = request.Count;
    }

    private void Pump()
    {
        if (connection.Phase != ConnectionPhase.Open || !context.Channel.Active)
        {
            Stop();
            return;
        }

        if (request.IntervalMs > 0)
        {
            if (!Finished)
            {
                _ = context.WriteAndFlushAsync(new StreamItem(next++, payload));
            }

            if (!Finished)
            {
                timer = context.Executor.Schedule(static s => ((StreamSender)s!).Pump(), this, TimeSpan.FromMilliseconds(request.IntervalMs));
            }
            else
            {
                Complete();
            }

            return;
        }

        var wrote = false;
        while (!Finished && context.Channel.IsWritable)
        {
            _ = context.WriteAsync(new StreamItem(next++, payload));
            wrote = true;
        }

        if (wrote)
        {
            context.Flush();
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
