using DotNetty.Common.Concurrency;
using DotNetty.Transport.Channels;

namespace Transport.Epoll;

/// <summary>
/// A fixed set of <see cref="EpollEventLoop"/>s handed out round-robin, as DotNetty's MultithreadEventLoopGroup does
/// (which is sealed): <c>new ServerBootstrap().Group(new EpollEventLoopGroup(1), new EpollEventLoopGroup(n))</c>.
/// </summary>
public sealed class EpollEventLoopGroup : AbstractEventExecutorGroup, IEventLoopGroup
{
    private readonly EpollEventLoop[] loops;
    private int next;

    /// <summary>One loop per processor.</summary>
    public EpollEventLoopGroup()
        : this(Environment.ProcessorCount)
    {
    }

    public EpollEventLoopGroup(int loopCount)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(loopCount, 1);
        loops = new EpollEventLoop[loopCount];
        for (var i = 0; i < loopCount; i++)
        {
            loops[i] = new EpollEventLoop(this, $"epoll-{i}");
        }

        TerminationCompletion = Task.WhenAll(loops.Select(l => l.TerminationCompletion));
    }

    public override bool IsShutdown => loops.All(l => l.IsShutdown);

    public override bool IsTerminated => loops.All(l => l.IsTerminated);

    public override bool IsShuttingDown => loops.All(l => l.IsShuttingDown);

    public override Task TerminationCompletion { get; }

    public new IEnumerable<IEventLoop> Items => loops;

    IEnumerable<IEventLoop> IEventLoopGroup.Items => loops;

    public override IEventExecutor GetNext() => NextLoop();

    IEventLoop IEventLoopGroup.GetNext() => NextLoop();

    public Task RegisterAsync(IChannel channel) => NextLoop().RegisterAsync(channel);

    public override Task ShutdownGracefullyAsync(TimeSpan quietPeriod, TimeSpan timeout)
    {
        foreach (var loop in loops)
        {
            _ = loop.ShutdownGracefullyAsync(quietPeriod, timeout);
        }

        return TerminationCompletion;
    }

    protected override IEnumerable<IEventExecutor> GetItems() => loops;

    private EpollEventLoop NextLoop() => loops[(int)((uint)Interlocked.Increment(ref next) % (uint)loops.Length)];
}
