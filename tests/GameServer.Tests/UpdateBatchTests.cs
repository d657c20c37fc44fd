using System.Diagnostics.Metrics;
using DotNetty.Buffers;
using DotNetty.Transport.Channels.Embedded;
using GameServer.Game;
using GameServer.Hosting;
using Microsoft.Extensions.DependencyInjection;
using TcpConnections;

namespace GameServer.Tests;

/// <summary>
/// Room updates go to each event loop as one task per tick, and a loop that has not started on a tick's updates gets
/// the next tick's instead of both (latest wins), so a loop that falls behind never builds a queue of stale updates.
/// An embedded channel has no direct write, so the whole frames given to the batch go through the pipeline here,
/// their header skipped (the prepender would add its own); the direct path is the epoll transport's, tested there and
/// by the game's tests on that transport.
/// </summary>
public class UpdateBatchTests
{
    [Fact]
    public void ALoopThatHasNotRunItsTickYet_GetsOnlyTheNewestUpdates_AndTheReplacedOnesAreReleased()
    {
        var channel = new EmbeddedChannel(new ConnectionHandler());
        var connection = TcpConnection.Of(channel);
        Assert.Equal(ConnectionPhase.Open, connection.Phase);
        var batch = new UpdateBatch();

        var first = Unpooled.WrappedBuffer([0, 0, 0, 3, 1, 1, 1]);
        batch.Add(connection, first);
        Assert.Equal(0, batch.Dispatch()); // queued on the loop, which has not run it yet
        var second = Unpooled.WrappedBuffer([0, 0, 0, 3, 2, 2, 2]);
        batch.Add(connection, second);
        Assert.Equal(1, batch.Dispatch()); // replaces the first: counted as coalesced
        Assert.Equal(0, first.ReferenceCount);

        channel.RunPendingTasks();
        var sent = channel.ReadOutbound<IByteBuffer>();
        Assert.Equal(new byte[] { 2, 2, 2 }, ReadAll(sent));
        sent.Release();
        Assert.Null(channel.ReadOutbound<IByteBuffer>()); // one update, the newest, and nothing else

        // Once the loop has taken a tick's updates, the next tick's are queued anew, not replaced.
        var third = Unpooled.WrappedBuffer([0, 0, 0, 3, 3, 3, 3]);
        batch.Add(connection, third);
        Assert.Equal(0, batch.Dispatch());
        channel.RunPendingTasks();
        sent = channel.ReadOutbound<IByteBuffer>();
        Assert.Equal(new byte[] { 3, 3, 3 }, ReadAll(sent));
        sent.Release();
    }

    [Fact]
    public void AConnectionThatClosedBeforeItsLoopRan_GetsNothing_AndTheUpdateIsReleased()
    {
        var channel = new EmbeddedChannel(new ConnectionHandler());
        var connection = TcpConnection.Of(channel);
        var batch = new UpdateBatch();
        var update = Unpooled.WrappedBuffer([0, 0, 0, 1, 9]);
        batch.Add(connection, update);
        batch.Dispatch();
        _ = connection.CloseAsync(CloseReason.PeerClosed); // on the loop, before the batch's task runs
        channel.RunPendingTasks();

        Assert.NotEqual(ConnectionPhase.Open, connection.Phase);
        while (channel.ReadOutbound<IByteBuffer>() is { } written)
        {
            Assert.NotEqual(new byte[] { 9 }, ReadAll(written)); // the close path may flush; the update is not sent
            written.Release();
        }

        Assert.Equal(0, update.ReferenceCount);
    }

    [Fact]
    public void OneFrameForSeveralMembersOnALoop_IsSentToEach_AndEveryReferenceIsReleased()
    {
        var channel = new EmbeddedChannel(new ConnectionHandler());
        var connection = TcpConnection.Of(channel);
        var closedChannel = new EmbeddedChannel(new ConnectionHandler());
        var closed = TcpConnection.Of(closedChannel);
        _ = closed.CloseAsync(CloseReason.PeerClosed);
        var batch = new UpdateBatch();

        // One reference per Add, as a room takes them: three members of one room here, then another room's frame.
        var shared = Unpooled.WrappedBuffer([0, 0, 0, 2, 4, 4]);
        shared.Retain(2);
        batch.Add(connection, shared);
        batch.Add(connection, shared);
        batch.Add(connection, shared);
        var other = Unpooled.WrappedBuffer([0, 0, 0, 1, 5]);
        batch.Add(connection, other);
        var unsent = Unpooled.WrappedBuffer([0, 0, 0, 1, 6]);
        batch.Add(closed, unsent);
        batch.Dispatch();
        channel.RunPendingTasks();
        closedChannel.RunPendingTasks();

        var written = WrittenFrames(channel);

        Assert.Equal([[4, 4], [4, 4], [4, 4], [5]], written);
        Assert.Equal(0, shared.ReferenceCount);
        Assert.Equal(0, other.ReferenceCount);
        Assert.Equal(0, unsent.ReferenceCount);
    }

    [Fact]
    public void APeerThatIsNotWritableWhenItsLoopSends_GetsNothing_AndTheUpdateIsCountedAsCoalesced()
    {
        using var services = new ServiceCollection().AddMetrics().BuildServiceProvider();
        var metrics = new GameServerMetrics(services.GetRequiredService<IMeterFactory>());
        long coalesced = 0;
        using var listener = new MeterListener
        {
            InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Name == "gameserver.state_updates.coalesced" && ReferenceEquals(instrument.Meter, metrics.Meter))
                {
                    l.EnableMeasurementEvents(instrument);
                }
            },
        };
        listener.SetMeasurementEventCallback<long>((_, value, _, _) => Interlocked.Add(ref coalesced, value));
        listener.Start();

        var channel = new EmbeddedChannel(new ConnectionHandler());
        channel.Configuration.WriteBufferHighWaterMark = 64;
        channel.Configuration.WriteBufferLowWaterMark = 32;
        var connection = TcpConnection.Of(channel);
        var batch = new UpdateBatch(metrics);
        var update = Unpooled.WrappedBuffer([0, 0, 0, 1, 7]);
        batch.Add(connection, update);
        batch.Dispatch();

        // Between the tick and its loop's turn the peer stops reading: its outbound buffer passes the high mark.
        _ = channel.WriteAsync(Unpooled.WrappedBuffer(new byte[128]));
        Assert.False(channel.IsWritable);
        channel.RunPendingTasks();
        channel.Flush();

        var written = WrittenFrames(channel);

        Assert.Equal([new byte[128]], written);
        Assert.Equal(0, update.ReferenceCount);
        Assert.Equal(1, Interlocked.Read(ref coalesced));
    }

    /// <summary>Every buffer the channel wrote, as bytes, each released.</summary>
    private static List<byte[]> WrittenFrames(EmbeddedChannel channel)
    {
        var written = new List<byte[]>();
        while (channel.ReadOutbound<IByteBuffer>() is { } buffer)
        {
            written.Add(ReadAll(buffer));
            buffer.Release();
        }

        return written;
    }

    private static byte[] ReadAll(IByteBuffer buffer)
    {
        var bytes = new byte[buffer.ReadableBytes];
        buffer.ReadBytes(bytes);
        return bytes;
    }
}
