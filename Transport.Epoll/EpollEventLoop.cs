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

    // Rounds of "close what is registered, run what that queued" at the end; a handler that registers a new channel
    // from every ChannelInactive would otherwise keep the loop alive for ever.
    private const int MaxFinalCloseRounds = 16;
    private static readonly TimeSpan TaskBudget = TimeSpan.FromMilliseconds(10);

    private static readonly IInternalLogger Logger = InternalLoggerFactory.GetInstance<EpollEventLoop>();

    private readonly ConcurrentQueue<IRunnable> tasks = new();
    // Every channel registered on this loop, with or without a descriptor (a client before connect, a parked one);
    // the ones in the epoll set by descriptor. A shutdown closes the first set, events are looked up in the second.
    private readonly HashSet<IEpollChannel> registered = [];
    private readonly Dictionary<int, IEpollChannel> polled = [];
    private readonly Lock wakeLock = new();

    // Taken by Execute and by the loop's final state change, so a task is either refused or sure to run.
    private readonly Lock stateLock = new();
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

    /// <summary>What a channel's gathering write collects its buffers in; loop thread only, empty between writes.</summary>
    internal WriteGatherer Gatherer { get; } = new(EpollSocketChannel.MaxIov);

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
        lock (stateLock)
        {
            // The loop's last drain runs after it sets Terminated under this lock: a task queued before that runs, one
            // refused here never does. Netty's execute reaches the same rule by taking a task back out of its queue.
            var current = state;
            if (current == Terminated)
            {
                throw new RejectedExecutionException("the epoll event loop has terminated");
            }

            tasks.Enqueue(task);
            if (current == NotStarted)
            {
                Volatile.Write(ref state, Started);
                thread.Start();
            }
        }

        if (!InEventLoop)
        {
            WakeUp();
        }
    }

    public override Task ShutdownGracefullyAsync(TimeSpan quietPeriod, TimeSpan timeout)
    {
        var terminateNow = false;
        lock (stateLock)
        {
            switch (state)
            {
                case NotStarted:
                    // Never started means no task was ever queued (Execute starts the thread): nothing to run or close.
                    Volatile.Write(ref state, Terminated);
                    terminateNow = true;
                    break;
                case Started:
                    // The parameters first: a busy loop may see ShuttingDown and confirm the shutdown at once.
                    quietPeriodTicks = (long)(quietPeriod.TotalSeconds * Stopwatch.Frequency);
                    Volatile.Write(ref shutdownDeadline, Stopwatch.GetTimestamp() + (long)(timeout.TotalSeconds * Stopwatch.Frequency));
                    Volatile.Write(ref state, ShuttingDown);
                    break;
                default:
                    break; // already on its way
            }
        }

        if (terminateNow)
        {
            CloseDescriptors();
            termination.TrySetResult();
        }
        else
        {
            WakeUp();
        }

        return TerminationCompletion;
    }

    /// <summary>Puts a channel on this loop's books (it has no descriptor in the epoll set yet). On the loop thread.</summary>
    internal void Register(IEpollChannel channel)
    {
        Debug.Assert(InEventLoop);
        if (Volatile.Read(ref state) == Terminated)
        {
            throw new RejectedExecutionException("the epoll event loop has terminated");
        }

        registered.Add(channel);
    }

    /// <summary>Takes a channel off this loop's books, and its descriptor out of the epoll set.</summary>
    internal void Deregister(IEpollChannel channel)
    {
        Debug.Assert(InEventLoop);
        Remove(channel);
        registered.Remove(channel);
    }

    /// <summary>Adds a channel's descriptor to this loop's epoll set. On the loop thread.</summary>
    internal void Add(IEpollChannel channel, uint interest)
    {
        Debug.Assert(InEventLoop);
        if (Control(LibC.EPOLL_CTL_ADD, channel.FileDescriptor, interest) != 0)
        {
            throw Errno.ToException(Errno.Last);
        }

        polled[channel.FileDescriptor] = channel;
    }

    internal void Modify(IEpollChannel channel, uint interest)
    {
        Debug.Assert(InEventLoop);
        if (!polled.ContainsKey(channel.FileDescriptor))
        {
            return; // taken out of the set already (both directions shut); only its close is left
        }

        if (Control(LibC.EPOLL_CTL_MOD, channel.FileDescriptor, interest) != 0)
        {
            throw Errno.ToException(Errno.Last);
        }
    }

    /// <summary>
    /// Takes a descriptor out of the epoll set: before it is closed (a closed descriptor number can be reused at once),
    /// or to park it. The channel stays on this loop's books, so a shutdown still closes it.
    /// </summary>
    internal void Remove(IEpollChannel channel)
    {
        Debug.Assert(InEventLoop);
        if (polled.Remove(channel.FileDescriptor, out var owner))
        {
            Debug.Assert(ReferenceEquals(owner, channel));
            _ = Control(LibC.EPOLL_CTL_DEL, channel.FileDescriptor, 0);
        }
    }

    private unsafe int Control(int op, int fd, uint events)
    {
        var ev = stackalloc byte[16];
        EpollEvents.Write(ev, events, (ulong)fd);
        return LibC.epoll_ctl(epollFd, op, fd, ev);
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
                    else if (polled.TryGetValue(fd, out var channel))
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
            // Whatever is still registered (a registration from the accept loop, or from a ChannelInactive handler, that
            // came in during the last drains) is closed through its pipeline like the rest: ChannelInactive fires,
            // queued writes fail and release their buffers. Closing queues tasks, and those tasks may register more.
            for (var round = 0; round < MaxFinalCloseRounds; round++)
            {
                RunAllTasksNow();
                if (registered.Count == 0 && tasks.IsEmpty)
                {
                    break;
                }

                foreach (var channel in AllChannels())
                {
                    channel.Close();
                }
            }

            foreach (var channel in AllChannels())
            {
                channel.ForceClose(); // the last resort, for what a handler kept bringing back
            }

            lock (stateLock)
            {
                Volatile.Write(ref state, Terminated);
            }

            RunAllTasksNow(); // accepted before the state changed, so promised to run

            // Scheduled from the loop thread during the last rounds (a delayed reconnect from ChannelInactive): they will
            // never run, so they are cancelled rather than left for someone to wait on.
            CancelScheduledTasks();
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

    private List<IEpollChannel> AllChannels() => [.. registered];
}
