using DotNetty.Common.Concurrency;
using DotNetty.Transport.Channels;
using GameProtocol;
using GameServer.Connection;

namespace GameServer.Game;

/// <summary>
/// Serves one StreamRequest on the connection's event loop: paced items on a schedule, or as fast as the peer
/// reads (it pauses while the channel is not writable and resumes on the writability change, so a slow reader
/// never makes the server queue the whole stream in memory).
/// </summary>
public sealed class StreamSender
{
    private readonly IChannelHandlerContext context;
    private readonly ConnectionState connection;
    private readonly StreamRequest request;
    private readonly byte[] payload;
    private int next;
    private IScheduledTask? timer;

    public StreamSender(IChannelHandlerContext context, ConnectionState connection, StreamRequest request)
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
    public void Resume()
    {
        if (request.IntervalMs == 0)
        {
            Pump();
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
