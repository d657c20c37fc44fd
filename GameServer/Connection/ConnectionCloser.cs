using DotNetty.Buffers;
using DotNetty.Transport.Channels;
using Transport.Epoll;

namespace GameServer.Connection;

/// <summary>
/// The one way to end a connection on purpose. Every close records its reason first (the first reason wins), then
/// either drains (graceful) or resets (abortive). The bookkeeping (log line, metric, event) happens once, in
/// <see cref="CloseClassifier"/>, when the channel goes inactive. Safe to call from any thread, any number of times.
/// </summary>
public static class ConnectionCloser
{
    /// <summary>
    /// Graceful close: send the farewell, flush, shut down the write side (FIN after every queued byte), keep
    /// reading and discarding until the peer's FIN or the drain deadline, then close. The peer is thereby never
    /// closed on with unread data in our receive buffer, which would turn our FIN into an RST (case C3).
    /// </summary>
    /// <param name="farewell">Built on the event loop at the moment of sending, so counts in it are exact.</param>
    public static Task<ConnectionClosedEvent> CloseGracefullyAsync(
        IChannel channel, CloseReason reason, Func<ConnectionState, object?>? farewell = null, string? detail = null)
    {
        var state = ConnectionState.Of(channel);
        RunOnLoop(channel, () => BeginGracefulClose(state, reason, farewell, detail));
        return state.Closed;
    }

    /// <summary>Abortive close: SO_LINGER 0 and close. Queued data is discarded and the peer gets an RST at once.</summary>
    public static Task<ConnectionClosedEvent> AbortAsync(IChannel channel, CloseReason reason, int errno = 0, string? detail = null)
    {
        var state = ConnectionState.Of(channel);
        RunOnLoop(channel, () => Abort(state, reason, errno, detail));
        return state.Closed;
    }

    private static void BeginGracefulClose(ConnectionState state, CloseReason reason, Func<ConnectionState, object?>? farewell, string? detail)
    {
        state.TrySetReason(reason, 0, detail);
        if (state.Phase != ConnectionPhase.Open)
        {
            return;
        }

        var channel = state.Channel;
        if (!channel.Active)
        {
            CloseQuietly(channel);
            return;
        }

        state.Phase = ConnectionPhase.Draining;

        // Reading must go on while draining, even if backpressure had paused it: that is how the peer's FIN is seen.
        // (Turning AutoRead on starts a read; an extra Read() while one is pending would break the socket's
        // single receive operation.)
        channel.Configuration.AutoRead = true;

        var message = farewell?.Invoke(state);
        var flushed = message is null ? channel.WriteAndFlushAsync(Unpooled.Empty) : channel.WriteAndFlushAsync(message);
        flushed.ContinueWith(
            static (_, s) => ShutdownOutputOrClose((IChannel)s!),
            channel,
            TaskContinuationOptions.ExecuteSynchronously);
    }

    private static void ShutdownOutputOrClose(IChannel channel)
    {
        if (!channel.EventLoop.InEventLoop)
        {
            channel.EventLoop.Execute(() => ShutdownOutputOrClose(channel));
            return;
        }

        // Without a socket to half-close (an embedded channel, another transport), closing is all that is left.
        if (!channel.Active || !SocketAccess.TryShutdownOutput(channel))
        {
            CloseQuietly(channel);
            return;
        }

        // The peer's FIN came before ours (a half-closing transport kept the output open for the farewell): both
        // directions are done, there is nothing left to drain.
        if (channel is IDuplexChannel { IsInputShutdown: true })
        {
            CloseQuietly(channel);
            return;
        }

        // The drain deadline starts once the farewell is out: a slow but reading peer gets all of it. A flush that
        // never completes is the slow-consumer timeout's business, not this one's.
        var state = ConnectionState.Of(channel);
        state.DrainTimer = channel.EventLoop.Schedule(static s => CloseQuietly((IChannel)s!), channel, state.DrainTimeout);
    }

    private static void Abort(ConnectionState state, CloseReason reason, int errno, string? detail)
    {
        state.TrySetReason(reason, errno, detail);
        if (state.Phase == ConnectionPhase.Closed)
        {
            return;
        }

        state.Phase = ConnectionPhase.Draining;
        SocketAccess.TryAbort(state.Channel);
        CloseQuietly(state.Channel);
    }

    /// <summary>
    /// Closes the channel and observes the result. After our own abort DotNetty's <c>DoClose</c> meets a disposed
    /// socket and fails the close task, although the channel does close; nobody needs to hear about that.
    /// </summary>
    public static void CloseQuietly(IChannel channel) =>
        channel.CloseAsync().ContinueWith(
            static t => _ = t.Exception,
            CancellationToken.None,
            TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously,
            TaskScheduler.Default);

    private static void RunOnLoop(IChannel channel, Action action)
    {
        if (channel.EventLoop.InEventLoop)
        {
            action();
        }
        else
        {
            channel.EventLoop.Execute(action);
        }
    }

    /// <summary>
    /// Hands work from a timer thread to an event loop. A timer can fire while the loop is shutting down; the
    /// rejected task then has nothing left to do, and the exception must not reach the timer thread, where it would
    /// end the process.
    /// </summary>
    public static void TryExecute(DotNetty.Common.Concurrency.IEventExecutor executor, Action<object?> action, object? state)
    {
        try
        {
            executor.Execute(action, state);
        }
        catch (DotNetty.Common.Concurrency.RejectedExecutionException)
        {
        }
    }
}
