using DotNetty.Transport.Channels.Embedded;
using GameProtocol;
using GameServer.Connection;
using GameServer.Connection.Codec;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;

namespace GameServer.Tests;

/// <summary>The idle timer (mechanism) and the heartbeat (policy) on a fake clock: no real waiting.</summary>
public class HeartbeatTests
{
    private static readonly HeartbeatOptions Options = new() { IntervalMs = 1000, Misses = 3 };

    private static (EmbeddedChannel Channel, FakeTimeProvider Time) NewChannel()
    {
        var time = new FakeTimeProvider();
        var classifier = new CloseClassifier(new CloseOptions(), GameConnectionProtocol.Instance, ConnectionMetrics.None, NullLogger.Instance);
        var channel = new EmbeddedChannel(
            classifier,
            new IdleStateTimer(Options.Interval, TimeSpan.Zero, time),
            new HeartbeatHandler(Options, GameConnectionProtocol.Instance, time, ConnectionMetrics.None));
        return (channel, time);
    }

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
        var state = ConnectionState.Of(channel);

        Advance(channel, time, TimeSpan.FromMilliseconds(2950));
        Assert.True(channel.Active, "two silent intervals are not yet a dead peer");

        Advance(channel, time, TimeSpan.FromMilliseconds(300));
        Assert.False(channel.Active);
        var closed = await state.Closed.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(CloseReason.HeartbeatTimeout, closed.Reason);
        Assert.Contains("3 heartbeat intervals of 1000 ms", closed.Detail, StringComparison.Ordinal);
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
        Assert.Null(ConnectionState.Of(channel).Reason);
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
    public void IdleTimer_CountsConsecutiveQuietPeriods()
    {
        var time = new FakeTimeProvider();
        var events = new List<IdleStateEvent>();
        var channel = new EmbeddedChannel(new IdleStateTimer(TimeSpan.FromSeconds(1), TimeSpan.Zero, time), new EventSink(events));
        Advance(channel, time, TimeSpan.FromMilliseconds(3100));
        Assert.Equal([1, 2, 3], events.Select(e => e.Count));
        Assert.All(events, e => Assert.Equal(IdleState.ReaderIdle, e.State));

        channel.WriteInbound(new object());
        Advance(channel, time, TimeSpan.FromMilliseconds(900));
        Assert.Equal(3, events.Count);
        Advance(channel, time, TimeSpan.FromMilliseconds(400)); // the timer checks every quarter period
        Assert.Equal(4, events.Count);
        Assert.Equal(1, events[^1].Count); // a new quiet spell
    }

    private sealed class EventSink(List<IdleStateEvent> events) : DotNetty.Transport.Channels.ChannelHandlerAdapter
    {
        public override void UserEventTriggered(DotNetty.Transport.Channels.IChannelHandlerContext context, object evt)
        {
            if (evt is IdleStateEvent idle)
            {
                events.Add(idle);
            }
        }
    }
}
