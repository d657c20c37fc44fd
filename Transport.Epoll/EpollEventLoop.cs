using System.Collections.Concurrent;
using System.Diagnostics;
using DotNetty.Common;
using DotNetty.Common.Concurrency;
using DotNetty.Common.Internal.Logging;
using DotNetty.Transport.Channels;
using Transport.Epoll.Native;

using TaskCompletionSource = System.Threading.Tasks.TaskCompletionSource;

namespace Transport.Epoll;

/// <summary>
/// An event loop whose thread waits in <c>epoll_wait</c> itself and does the socket work of its channels inline,
/// instead of receiving completions from .NET's own epoll thread: one thread, no hop per read. Tasks from other
/// threads wake it through an eventfd; the wait's timeout is the next scheduled task's deadline.
/// </summary>
/// <remarks>
/// DotNetty's <c>SingleThreadEventLoop</c> cannot host the wait (its loop is private and its wake-up not virtual), so
/// this builds on <see cref="AbstractScheduledEventExecutor"/> as DotNetty's own Libuv transport does.
/// </remarks>
public sealed class EpollEventLoop : AbstractScheduledEventExecutor, IEventLoop
{
    private const int NotStarted = 0;
    private const int Started = 1;
    private const int ShuttingDown = 2;
    private const int Terminated = 3;

    // Events per epoll_wait, and how long one round of queued tasks may run before I/O gets its turn again.
    private const int MaxEvents = 512;
    private const int ShutdownPollMs = 100;
    private static readonly TimeSpan TaskBudget = TimeSpan.FromMilliseconds(10);

    private static readonly IInternalLogger Logger = InternalLoggerFactory.GetInstance<EpollEventLoop>();

    private readonly ConcurrentQueue<IRunnable> tasks = new();
    private readonly Dictionary<int, IEpollChannel> channels = [];
    private readonly HashSet<IEpollChannel> parked = [];
    private readonly Lock wakeLock = new();
    private bool descriptorsClosed;
    private readonly TaskCompletionSource termination = new();
    private readonly Thread thread;
    private readonly int epollFd;
    private readonly int wakeFd;
    private int state;
    private int blocked;
    private long quietPeriodTicks;
    private long shutdownDeadline;
    private long lastTaskTime;

    public EpollEventLoop(IEventLoopGroup? parent = null, string? threadName = null)
        : base(parent)
    {
        if (!OperatingSystem.IsLinux())
        {
            throw new PlatformNotSupportedException("the epoll transport runs on Linux only; use the stock socket transport elsewhere");
        }

        epollFd = LibC.epoll_create1(LibC.EPOLL_CLOEXEC);
        if (epollFd < 0)
        {
            throw Errno.ToException(Errno.Last);
        }

        wakeFd = LibC.eventfd(0, LibC.EFD_CLOEXEC | LibC.EFD_NONBLOCK);
        if (wakeFd < 0 || Control(LibC.EPOLL_CTL_ADD, wakeFd, LibC.EPOLLIN) != 0)
        {
            var errno = Errno.Last;
            _ = LibC.close(epollFd);
            throw Errno.ToException(errno);
        }

        thread = new Thread(Run) { Name = threadName ?? "epoll-loop", IsBackground = true };
        Parent = parent;
    }

    public new IEventLoopGroup? Parent { get; }

    IEventLoopGroup IEventLoop.Parent => Parent!;

    public override bool IsShuttingDown => Volatile.Read(ref state) >= ShuttingDown;

    public override bool IsShutdown => Volatile.Read(ref state) >= ShuttingDown;

    public override bool IsTerminated => Volatile.Read(ref state) == Terminated;

    public override Task TerminationCompletion => termination.Task;

    public new IEventLoop GetNext() => this;

    IEventLoop IEventLoopGroup.GetNext() => this;

    IEnumerable<IEventLoop> IEventLoopGroup.Items => [this];

    protected override IEnumerable<IEventExecutor> GetItems() => [this];

    public Task RegisterAsync(IChannel channel) => channel.Unsafe.RegisterAsync(this);

    public override bool IsInEventLoop(Thread thread) => thread == this.thread;

    public override void Execute(IRunnable task)
    {
        ArgumentNullException.ThrowIfNull(task);
        if (IsShutdown && Volatile.Read(ref state) == Terminated)
        {
            throw new RejectedExecutionException("the epoll event loop has terminated");
        }

        tasks.Enqueue(task);
        StartIfNeeded();
        if (!InEventLoop)
        {
            WakeUp();
        }

        if (Volatile.Read(ref state) == Terminated)
        {
            throw new RejectedExecutionException("the epoll event loop terminated while the task was queued");
        }
    }

    public override Task ShutdownGracefullyAsync(TimeSpan quietPeriod, TimeSpan timeout)
    {
        // The parameters first: a busy loop may see ShuttingDown and confirm the shutdown at once.
        quietPeriodTicks = (long)(quietPeriod.TotalSeconds * Stopwatch.Frequency);
        Volatile.Write(ref shutdownDeadline, Stopwatch.GetTimestamp() + (long)(timeout.TotalSeconds * Stopwatch.Frequency));
        while (true)
        {
            if (Interlocked.CompareExchange(ref state, ShuttingDown, Started) == Started)
            {
                WakeUp();
                break;
            }

            if (Interlocked.CompareExchange(ref state, Terminated, NotStarted) == NotStarted)
            {
                CloseDescriptors();
                termination.TrySetResult();
                break;
            }

            if (Volatile.Read(ref state) >= ShuttingDown)
            {
                break; // already on its way
            }
        }

        return TerminationCompletion;
    }

    /// <summary>Adds a channel's descriptor to this loop's epoll set. On the loop thread.</summary>
    internal void Add(IEpollChannel channel, uint interest)
    {
        Debug.Assert(InEventLoop);
        if (Control(LibC.EPOLL_CTL_ADD, channel.FileDescriptor, interest) != 0)
        {
            throw Errno.ToException(Errno.Last);
        }

        channels[channel.FileDescriptor] = channel;
    }

    internal void Modify(IEpollChannel channel, uint interest)
    {
        Debug.Assert(InEventLoop);
        if (!channels.ContainsKey(channel.FileDescriptor))
        {
            return; // taken out of the set already (both directions shut); only its close is left
        }

        if (Control(LibC.EPOLL_CTL_MOD, channel.FileDescriptor, interest) != 0)
        {
            throw Errno.ToException(Errno.Last);
        }
    }

    /// <summary>Removes a descriptor before it is closed (a closed descriptor number can be reused at once).</summary>
    internal void Remove(IEpollChannel channel)
    {
        Debug.Assert(InEventLoop);
        parked.Remove(channel);
        if (channels.Remove(channel.FileDescriptor))
        {
            _ = Control(LibC.EPOLL_CTL_DEL, channel.FileDescriptor, 0);
        }
    }

    /// <summary>
    /// Takes a descriptor out of the epoll set but keeps the channel on this loop's books, so a shutdown still
    /// closes it; <see cref="Unpark"/> puts it back.
    /// </summary>
    internal void Park(IEpollChannel channel)
    {
        Debug.Assert(InEventLoop);
        if (channels.Remove(channel.FileDescriptor))
        {
            _ = Control(LibC.EPOLL_CTL_DEL, channel.FileDescriptor, 0);
            parked.Add(channel);
        }
    }

    internal void Unpark(IEpollChannel channel, uint interest)
    {
        Debug.Assert(InEventLoop);
        if (parked.Remove(channel))
        {
            Add(channel, interest);
        }
    }

    private unsafe int Control(int op, int fd, uint events)
    {
        var ev = stackalloc byte[16];
        EpollEvents.Write(ev, events, (ulong)fd);
        return LibC.epoll_ctl(epollFd, op, fd, ev);
    }

    private void StartIfNeeded()
    {
        if (Volatile.Read(ref state) == NotStarted && Interlocked.CompareExchange(ref state, Started, NotStarted) == NotStarted)
        {
            thread.Start();
        }
    }

    private unsafe void WakeUp()
    {
        // Only a loop that is (about to be) blocked in epoll_wait needs the eventfd; one write wakes it for all.
        if (Interlocked.CompareExchange(ref blocked, 0, 1) == 1)
        {
            // Under the lock: once the loop has closed its descriptors, their numbers may belong to anything.
            lock (wakeLock)
            {
                if (!descriptorsClosed)
                {
                    ulong one = 1;
                    _ = LibC.write(wakeFd, &one, sizeof(ulong));
                }
            }
        }
    }

    private void Run()
    {
        SetCurrentExecutor(this);
        using var events = new EpollEvents(MaxEvents);
        try
        {
            while (true)
            {
                var count = Wait(events);
                for (var i = 0; i < count; i++)
                {
                    var fd = (int)events.DataAt(i);
                    if (fd == wakeFd)
                    {
                        DrainWakeFd();
                    }
                    else if (channels.TryGetValue(fd, out var channel))
                    {
                        try
                        {
                            channel.OnEvents(events.EventsAt(i));
                        }
                        catch (Exception ex) when (ex is not OutOfMemoryException)
                        {
                            Logger.Warn("An epoll channel's event handling threw", ex);
                        }
                    }
                }

                RunTasks();
                if (IsShuttingDown && ConfirmShutdown())
                {
                    break;
                }
            }
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            Logger.Error("The epoll event loop failed", ex);
            termination.TrySetException(ex);
        }
        finally
        {
            // Tasks queued during the shutdown (a registration from the accept loop, say) run first, then whatever is
            // still open is closed at once, then the loop stops taking tasks and runs what raced the stop.
            RunAllTasksNow();
            foreach (var channel in AllChannels())
            {
                channel.ForceClose();
            }

            RunAllTasksNow();
            Volatile.Write(ref state, Terminated);
            RunAllTasksNow();
            CloseDescriptors();
            termination.TrySetResult();
        }
    }

    private unsafe int Wait(EpollEvents events)
    {
        var timeout = 0;
        if (tasks.IsEmpty)
        {
            Interlocked.Exchange(ref blocked, 1); // a full fence: the queue check below must not move above it

            // A task queued between the check above and the store is seen here; one queued after it finds
            // blocked = 1 and writes the eventfd.
            timeout = !tasks.IsEmpty ? 0 : IsShuttingDown ? ShutdownPollMs : TimeoutToNextScheduledTask();
        }

        var count = LibC.epoll_wait(epollFd, events.Pointer, events.Capacity, timeout);
        Volatile.Write(ref blocked, 0);
        if (count < 0)
        {
            var errno = Errno.Last;
            if (errno != LibC.EINTR)
            {
                throw Errno.ToException(errno);
            }

            return 0;
        }

        return count;
    }

    private int TimeoutToNextScheduledTask()
    {
        var next = PeekScheduledTask();
        if (next is null)
        {
            return -1;
        }

        var wait = (next.Deadline - PreciseTimeSpan.FromStart).ToTimeSpan();
        return wait <= TimeSpan.Zero ? 0 : (int)Math.Min(int.MaxValue, Math.Ceiling(wait.TotalMilliseconds));
    }

    private unsafe void DrainWakeFd()
    {
        ulong value;
        _ = LibC.read(wakeFd, &value, sizeof(ulong));
    }

    private void RunTasks()
    {
        var now = PreciseTimeSpan.FromStart;
        while (PollScheduledTask(now) is { } scheduled)
        {
            tasks.Enqueue(scheduled);
        }

        if (tasks.IsEmpty)
        {
            return;
        }

        var started = Stopwatch.GetTimestamp();
        var ran = 0;
        while (tasks.TryDequeue(out var task))
        {
            SafeExecute(task);

            // Bounded, so a flood of tasks cannot starve the sockets of this loop.
            if ((++ran & 63) == 0 && Stopwatch.GetElapsedTime(started) > TaskBudget)
            {
                break;
            }
        }

        lastTaskTime = Stopwatch.GetTimestamp();
    }

    private void RunAllTasksNow()
    {
        while (tasks.TryDequeue(out var task))
        {
            SafeExecute(task);
        }
    }

    /// <summary>Netty's rule: stop once no task has run for the quiet period, or at the deadline in any case.</summary>
    private bool ConfirmShutdown()
    {
        CancelScheduledTasks();
        foreach (var channel in AllChannels())
        {
            channel.Close(); // through the pipeline: ChannelInactive fires, pending writes fail, CloseCompletion completes
        }

        RunAllTasksNow();
        var now = Stopwatch.GetTimestamp();
        if (now >= Volatile.Read(ref shutdownDeadline))
        {
            return true;
        }

        if (now - lastTaskTime >= quietPeriodTicks && tasks.IsEmpty)
        {
            return true;
        }

        return false; // looked at again after at most ShutdownPollMs
    }

    private void CloseDescriptors()
    {
        lock (wakeLock)
        {
            if (!descriptorsClosed)
            {
                descriptorsClosed = true;
                _ = LibC.close(wakeFd);
                _ = LibC.close(epollFd);
            }
        }
    }

    private List<IEpollChannel> AllChannels() => [.. channels.Values, .. parked];
}
