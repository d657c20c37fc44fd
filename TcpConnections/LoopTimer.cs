using DotNetty.Common.Concurrency;

namespace TcpConnections;

/// <summary>
/// Runs an action on a channel's event loop after a delay, timed by a <see cref="TimeProvider"/>. With the system
/// clock the delay is the loop's own scheduled task, as Netty's handlers schedule theirs: no pool timer, no hop.
/// With any other clock (a test's fake one) the clock's timer fires and hands the action to the loop, so advancing
/// the clock drives the handlers exactly as time would.
/// </summary>
public sealed class LoopTimer
{
    private readonly IScheduledTask? scheduled;
    private readonly ITimer? timer;

    private LoopTimer(IScheduledTask scheduled) => this.scheduled = scheduled;

    private LoopTimer(ITimer timer) => this.timer = timer;

    /// <summary>Schedules <paramref name="action"/> once, on <paramref name="loop"/>, after <paramref name="delay"/>.</summary>
    public static LoopTimer Schedule(IEventExecutor loop, TimeProvider time, TimeSpan delay, Action<object?> action, object? state)
    {
        ArgumentNullException.ThrowIfNull(loop);
        ArgumentNullException.ThrowIfNull(time);
        if (ReferenceEquals(time, TimeProvider.System))
        {
            return new LoopTimer(loop.Schedule(action, state, delay));
        }

        return new LoopTimer(time.CreateTimer(
            static s =>
            {
                var (loop, action, state) = ((IEventExecutor, Action<object?>, object?))s!;
                try
                {
                    loop.Execute(action, state);
                }
                catch (RejectedExecutionException)
                {
                    // The loop is shutting down; its channels close with it and nothing is left to time.
                }
            },
            (loop, action, state),
            delay,
            Timeout.InfiniteTimeSpan));
    }

    /// <summary>Stops the action from running, if it has not started yet.</summary>
    public void Cancel()
    {
        scheduled?.Cancel();
        timer?.Dispose();
    }
}
