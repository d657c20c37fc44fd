using DotNetty.Buffers;
using DotNetty.Transport.Channels.Embedded;
using GameServer.Game;
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

    private static byte[] ReadAll(IByteBuffer buffer)
    {
        var bytes = new byte[buffer.ReadableBytes];
        buffer.ReadBytes(bytes);
        return bytes;
    }
}
