using DotNetty.Transport.Channels;
using DotNetty.Transport.Channels.Embedded;
using GameProtocol;
using TcpConnections;
using GameProtocol.Pipeline;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;

namespace GameServer.Tests;

/// <summary>The idle timer (mechanism) and the heartbeat (policy) on a fake clock: no real waiting.</summary>
public class HeartbeatTests
{
    private static readonly HeartbeatOptions Options = new() { IntervalMs = 1000, Misses = 3 };

    private static readonly TimeSpan SlowConsumerTimeout = TimeSpan.FromMilliseconds(5000);

    private static (EmbeddedChannel Channel, FakeTimeProvider Time) NewChannel(TimeSpan slowConsumerTimeout = default, Func<TcpInfo?>? kernel = null)
    {
        var time = new FakeTimeProvider();
        TcpInfoReader? readTcpInfo = kernel is null ? null : (IChannel _, out TcpInfo info) =>
        {
            info = kernel() ?? default;
            return kernel() is not null;
        };
        var channel = new EmbeddedChannel(
            new ConnectionHandler(),
            new IdleDetector(Options.Interval, TimeSpan.Zero, time),
            new HeartbeatHandler(Options, GameConnectionProtocol.Instance, time, null, slowConsumerTimeout, readTcpInfo),
            new ConnectionTailHandler(GameConnectionProtocol.Instance));
        return (channel, time);
    }

    /// <summary>A live reader behind on our output: bytes wait in our kernel, its kernel answered a probe just now.</summary>
    private static TcpInfo LiveSlowReader(TimeSpan sinceLastAck, int probes = 0) =>
        new(Retransmits: 0, Probes: probes, Backoff: 2, UnackedSegments: 0, SinceLastAck: sinceLastAck, NotSentBytes: 3_000_000);

    private static void Advance(EmbeddedChannel channel, FakeTimeProvider time, TimeSpan by)
    {
        // Step in small increments so every timer tick runs, then let the event loop run what they queued.
        var step = TimeSpan.FromMilliseconds(50);
        for (var left = by; left > TimeSpan.Zero; left -= step)
        {
            time.Advance(left < step ? left : step);
            channel.RunPendingTasks();
        }
    }

    [Fact]
    public void SendsAPingEveryInterval()
    {
        var (channel, time) = NewChannel();
        Advance(channel, time, TimeSpan.FromMilliseconds(999));
        Assert.Null(channel.ReadOutbound<object>());

        Advance(channel, time, TimeSpan.FromMilliseconds(1));
        Assert.Equal(1, Assert.IsType<Ping>(channel.ReadOutbound<object>()).Seq);

        channel.WriteInbound(new Move(1, 0, 0)); // any frame keeps the peer alive
        Advance(channel, time, TimeSpan.FromMilliseconds(1000));
        Assert.Equal(2, Assert.IsType<Ping>(channel.ReadOutbound<object>()).Seq);
    }

    [Fact]
    public async Task NoInboundFrameForMissesIntervals_IsHeartbeatTimeout()
    {
        var (channel, time) = NewChannel();
        var state = TcpConnection.Of(channel);

        Advance(channel, time, TimeSpan.FromMilliseconds(2950));
        Assert.True(channel.Active, "two silent intervals are not yet a dead peer");

        Advance(channel, time, TimeSpan.FromMilliseconds(300));
        Assert.False(channel.Active);
        var closed = await state.Closed.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(CloseReason.HeartbeatTimeout, closed.Reason);
        Assert.Contains("3 heartbeat intervals of 1000 ms", closed.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task MissesReached_WhileOurOutputIsBackedUp_AndThePeersKernelAnswers_Defers_AtMostTheSlowConsumerTimeoutBeyond()
    {
        var (channel, time) = NewChannel(SlowConsumerTimeout, () => LiveSlowReader(TimeSpan.FromMilliseconds(100)));
        var state = TcpConnection.Of(channel);

        // Misses × interval (3 s) plus the slow-consumer timeout (5 s): alive but slow until then.
        Advance(channel, time, TimeSpan.FromMilliseconds(7950));
        Assert.True(channel.Active, "a live reader behind on our output is the slow-consumer policy's to judge");

        Advance(channel, time, TimeSpan.FromMilliseconds(300));
        Assert.False(channel.Active);
        var closed = await state.Closed.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(CloseReason.HeartbeatTimeout, closed.Reason);
        Assert.Contains("8 heartbeat intervals of 1000 ms", closed.Detail, StringComparison.Ordinal);
        Assert.Contains("for the slow-consumer timeout beyond that", closed.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public void AnOldLastAck_WithOneProbeUnanswered_StillCountsAsAnswering()
    {
        // Deep in a long stall a live kernel's last answer is seconds old and its latest probe may be unanswered (it
        // answers one per 500 ms at most): still alive.
        var (channel, time) = NewChannel(SlowConsumerTimeout, () => LiveSlowReader(TimeSpan.FromSeconds(4), probes: 1));
        Advance(channel, time, TimeSpan.FromMilliseconds(5000));
        Assert.True(channel.Active);
    }

    [Theory]
    [InlineData(2, 0)] // two zero-window probes in a row unanswered
    [InlineData(0, 1)] // a retransmission timed out
    public async Task MissesReached_WhileOurOutputIsBackedUp_ButThePeersKernelIsSilent_IsHeartbeatTimeoutAtTheNormalBound(int probes, int retransmits)
    {
        // A pulled cable: nothing has answered for the whole quiet bound, and the kernel's probes or retransmissions
        // went unanswered.
        var (channel, time) = NewChannel(
            SlowConsumerTimeout,
            () => new TcpInfo(retransmits, probes, Backoff: 3, UnackedSegments: retransmits, SinceLastAck: TimeSpan.FromMilliseconds(3000), NotSentBytes: 3_000_000));
        var state = TcpConnection.Of(channel);

        Advance(channel, time, TimeSpan.FromMilliseconds(3300));
        Assert.False(channel.Active);
        var closed = await state.Closed.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(CloseReason.HeartbeatTimeout, closed.Reason);
        Assert.Contains("the peer's kernel stopped answering", closed.Detail, StringComparison.Ordinal);
        Assert.Contains($"{probes} probes unanswered, {retransmits} retransmissions", closed.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public void MissesReached_WithNothingBackedUp_IsHeartbeatTimeout_ThoughThePeersKernelAnswers()
    {
        // Our Pings are not stuck behind anything: a peer that does not answer them is hung, whatever its kernel does.
        var (channel, time) = NewChannel(SlowConsumerTimeout, () => LiveSlowReader(TimeSpan.FromMilliseconds(100)) with { NotSentBytes = 0 });
        Advance(channel, time, TimeSpan.FromMilliseconds(3300));
        Assert.False(channel.Active);
        Assert.Equal(CloseReason.HeartbeatTimeout, TcpConnection.Of(channel).Reason);
    }

    [Fact]
    public void WithoutASlowConsumerTimeout_OrWithTheKernelsViewUnknown_TheHeartbeatNeverDefers()
    {
        var (client, clientTime) = NewChannel(TimeSpan.Zero, () => LiveSlowReader(TimeSpan.FromMilliseconds(100)));
        Advance(client, clientTime, TimeSpan.FromMilliseconds(3300));
        Assert.False(client.Active);

        var (unknown, unknownTime) = NewChannel(SlowConsumerTimeout, () => null);
        Advance(unknown, unknownTime, TimeSpan.FromMilliseconds(3300));
        Assert.False(unknown.Active);
    }

    [Fact]
    public void InboundFrames_KeepTheConnectionAlive()
    {
        var (channel, time) = NewChannel();
        for (var i = 0; i < 10; i++)
        {
            Advance(channel, time, TimeSpan.FromMilliseconds(2500));
            channel.WriteInbound(new Move(i, 0, 0));
        }

        Assert.True(channel.Active);
        Assert.Null(TcpConnection.Of(channel).Reason);
    }

    [Fact]
    public void PongForItsOwnPing_IsConsumed_OthersPassOn()
    {
        var (channel, time) = NewChannel();
        Advance(channel, time, TimeSpan.FromMilliseconds(1000));
        var ping = Assert.IsType<Ping>(channel.ReadOutbound<object>());

        channel.WriteInbound(new Pong(ping.Seq, ping.SentAtUnixMs));
        Assert.Null(channel.ReadInbound<object>());

        channel.WriteInbound(new Pong(99, 0));
        Assert.Equal(99, Assert.IsType<Pong>(channel.ReadInbound<object>()).Seq);
    }

    [Fact]
    public void PongForAnOldPing_ThatWaitedBehindOurOutput_IsStillConsumed_ButNotTwice()
    {
        // A slow reader the heartbeat defers for answers its Pings late: each waited behind the stream it had not read
        // yet. Its Pong still answers a Ping we sent, however many Pings went out since.
        var (channel, time) = NewChannel(SlowConsumerTimeout, () => LiveSlowReader(TimeSpan.FromMilliseconds(100)));
        var pings = new List<Ping>();
        for (var i = 0; i < 8; i++)
        {
            Advance(channel, time, TimeSpan.FromMilliseconds(1000));
            pings.Add(Assert.IsType<Ping>(channel.ReadOutbound<object>()));
            channel.WriteInbound(new Move(i, 0, 0)); // its Echoes and Moves still arrive
            Assert.IsType<Move>(channel.ReadInbound<object>());
        }

        channel.WriteInbound(new Pong(pings[0].Seq, pings[0].SentAtUnixMs));
        Assert.Null(channel.ReadInbound<object>());
        channel.WriteInbound(new Pong(pings[5].Seq, pings[5].SentAtUnixMs));
        Assert.Null(channel.ReadInbound<object>());

        // A Pong for a Ping already answered (or settled by a later answer) answers nothing of ours.
        channel.WriteInbound(new Pong(pings[3].Seq, pings[3].SentAtUnixMs));
        Assert.Equal(pings[3].Seq, Assert.IsType<Pong>(channel.ReadInbound<object>()).Seq);
        Assert.True(channel.Active);
    }

    [Fact]
    public void IdleDetector_FiresAtTheExactQuietTime_AndCountsConsecutivePeriods()
    {
        var time = new FakeTimeProvider();
        var events = new List<IdleEvent>();
        var channel = new EmbeddedChannel(new IdleDetector(TimeSpan.FromSeconds(1), TimeSpan.Zero, time), new EventSink(events));
        Advance(channel, time, TimeSpan.FromMilliseconds(999));
        Assert.Empty(events);
        Advance(channel, time, TimeSpan.FromMilliseconds(1));
        Assert.Equal(TimeSpan.FromSeconds(1), Assert.Single(events).Quiet);

        Advance(channel, time, TimeSpan.FromMilliseconds(2100));
        Assert.Equal([1, 2, 3], events.Select(e => e.Count));
        Assert.All(events, e => Assert.Equal(IdleDirection.Reader, e.Direction));

        // A read 100 ms into the fourth period starts a new spell, idle a whole period after that read, not sooner.
        channel.WriteInbound(new object());
        Advance(channel, time, TimeSpan.FromMilliseconds(999));
        Assert.Equal(3, events.Count);
        Advance(channel, time, TimeSpan.FromMilliseconds(1));
        Assert.Equal(4, events.Count);
        Assert.Equal(1, events[^1].Count);
        Assert.Equal(TimeSpan.FromSeconds(1), events[^1].Quiet);
    }

    [Fact]
    public void IdleDetector_ACheckThatRunsLate_CountsEveryPeriodThatPassed_FiresOnce_AndKeepsChecking()
    {
        // A loop stalled for 3.5 periods: the first check runs only now.
        var time = new FakeTimeProvider();
        var events = new List<IdleEvent>();
        var channel = new EmbeddedChannel(new IdleDetector(TimeSpan.FromSeconds(1), TimeSpan.Zero, time), new EventSink(events));
        time.Advance(TimeSpan.FromMilliseconds(3500));
        channel.RunPendingTasks();
        Assert.Equal(3, Assert.Single(events).Count);

        Advance(channel, time, TimeSpan.FromMilliseconds(500));
        Assert.Equal([3, 4], events.Select(e => e.Count));
    }

    private sealed class EventSink(List<IdleEvent> events) : ChannelHandlerAdapter
    {
        public override void UserEventTriggered(IChannelHandlerContext context, object evt)
        {
            if (evt is IdleEvent idle)
            {
                events.Add(idle);
            }
        }
    }
}
