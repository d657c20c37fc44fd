using DotNetty.Buffers;
using DotNetty.Transport.Channels.Embedded;
using GameProtocol;
using GameProtocol.Pipeline;
using GameServer.Game;
using TcpConnections;

namespace GameServer.Tests;

/// <summary>
/// A room's tick is written by hand (<see cref="StateUpdateFrame"/>) instead of through the message formatters: its
/// bytes must stay exactly the codec's, for every width MessagePack picks, and every reference to the shared frame
/// must come back once its members have it.
/// </summary>
public class StateUpdateFrameTests
{
    public static TheoryData<int, long, long, long, string> Shapes() => new()
    {
        { 0, 1, 1_700_000_000_000, 0, "s" },
        { 1, 127, 1_700_000_000_000, 127, "0123456789abcdef01234567" },
        { 8, 128, 1_700_000_000_001, 128, "0123456789abcdef01234567" },
        { 15, 65_536, 0, 65_535, "ü-€-𝄞 not ASCII" },
        { 16, long.MaxValue, long.MaxValue, long.MaxValue, new string('x', 31) },
        { 64, 4_294_967_296, 1, -1, new string('y', 32) },
        { 300, 3, 2, long.MinValue, new string('z', 256) },
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void ATickWrittenByHand_IsByteForByte_WhatTheCodecMakesOfTheMessage(int players, long tick, long time, long seq, string id)
    {
        var states = Enumerable.Range(0, players)
            .Select(i => new PlayerState($"{id}{i}", i * -1.5f, i == 1 ? float.NaN : i * 1e30f, seq - i))
            .ToArray();
        var entries = states.Select(s => new StateUpdateFrame.Entry(StateUpdateFrame.EncodeId(s.PlayerId), s.X, s.Y, s.LastSeq)).ToArray();

        var expected = MessageCodec.EncodeFramed(UnpooledByteBufferAllocator.Default, new StateUpdate(tick, time, states));
        var actual = StateUpdateFrame.Encode(PooledByteBufferAllocator.Default, tick, time, entries);
        try
        {
            Assert.Equal(ReadAll(expected), ReadAll(actual));
        }
        finally
        {
            expected.Release();
            actual.Release();
        }
    }

    [Fact]
    public void ARoomsTick_GivesEveryMemberTheSameBytes_AndReleasesTheSharedFrameOnceAllHaveIt()
    {
        var (room, channels, members) = RoomOf(3);

        members[1].Move(7, 1.5f, -2f);
        var batch = new UpdateBatch();
        // Unpooled: its slices share the frame's own count, so the count read below is the frame's.
        Assert.True(room.Tick(1_700_000_000_000, UnpooledByteBufferAllocator.Default, 1 << 20, batch));
        batch.Dispatch();

        var expected = ProtocolSerializer.Serialize(new StateUpdate(1, 1_700_000_000_000, [.. members.Select(m => m.State)]));
        var sent = new List<IByteBuffer>();
        foreach (var channel in channels)
        {
            channel.RunPendingTasks();
            var update = channel.ReadOutbound<IByteBuffer>();
            Assert.NotNull(update);
            Assert.Null(channel.ReadOutbound<IByteBuffer>());
            sent.Add(update);
        }

        foreach (var update in sent)
        {
            Assert.Equal(expected, ReadAll(update.Duplicate()));
        }

        // One reference per member's slice and the room's own (its next tick writes over the frame once it is the
        // only one left), none of the batch's: a reference taken too many (or too few) at the tick shows here.
        Assert.All(sent, update => Assert.Same(sent[0].Unwrap(), update.Unwrap()));
        Assert.Equal(channels.Length + 1, sent[0].ReferenceCount);

        foreach (var update in sent)
        {
            update.Release();
        }

        Assert.Equal(1, sent[0].Unwrap().ReferenceCount);

        // A room that ticks empty lets its frame go.
        foreach (var member in members)
        {
            room.Remove(member);
        }

        Assert.True(room.Tick(1_700_000_000_050, UnpooledByteBufferAllocator.Default, 1 << 20, batch));
        Assert.Equal(0, sent[0].Unwrap().ReferenceCount);
    }

    [Fact]
    public void ARoomsNextTick_WritesOverItsFrame_OnlyOnceNoMemberStillHoldsIt()
    {
        var (room, channels, members) = RoomOf(2);

        var batch = new UpdateBatch();
        IByteBuffer[] TickAndRead(long time)
        {
            Assert.True(room.Tick(time, UnpooledByteBufferAllocator.Default, 1 << 20, batch));
            batch.Dispatch();
            return [.. channels.Select(channel =>
            {
                channel.RunPendingTasks();
                return Assert.IsAssignableFrom<IByteBuffer>(channel.ReadOutbound<IByteBuffer>());
            })];
        }

        byte[] Expected(long tick, long time) => ProtocolSerializer.Serialize(new StateUpdate(tick, time, [.. members.Select(m => m.State)]));

        // A member whose write has not finished (its slice still held) keeps the first tick's bytes as they were.
        var expectedFirst = Expected(1, 1_000);
        var first = TickAndRead(1_000);
        members[0].Move(5, 1f, 2f);
        var second = TickAndRead(1_050);
        Assert.NotSame(first[0].Unwrap(), second[0].Unwrap());
        Assert.All(second, update => Assert.Equal(Expected(2, 1_050), ReadAll(update.Duplicate())));
        members[1].Move(9, 3f, 4f);

        // Once every member is done with the second tick's frame, the third is written over it.
        foreach (var update in second)
        {
            update.Release();
        }

        var third = TickAndRead(1_100);
        Assert.Same(second[0].Unwrap(), third[0].Unwrap());
        Assert.All(third, update => Assert.Equal(Expected(3, 1_100), ReadAll(update.Duplicate())));
        Assert.All(first, update => Assert.Equal(expectedFirst, ReadAll(update.Duplicate())));

        foreach (var update in first.Concat(third))
        {
            update.Release();
        }
    }

    [Fact]
    public void ARoomsTick_AllocatesNothing_OnceItsMembersAndTheirLoopsAreKnown()
    {
        var (room, channels, _) = RoomOf(8);

        var batch = new UpdateBatch();
        long allocated = 0;
        for (var tick = 0; tick < 10; tick++)
        {
            // The ticker's part only (the loops' sends go through the embedded pipeline, which allocates its own).
            var before = GC.GetAllocatedBytesForCurrentThread();
            Assert.True(room.Tick(1_000 + tick, UnpooledByteBufferAllocator.Default, 1 << 20, batch));
            var after = GC.GetAllocatedBytesForCurrentThread();
            if (tick >= 5)
            {
                allocated += after - before;
            }

            batch.Dispatch();
            foreach (var channel in channels)
            {
                channel.RunPendingTasks();
                channel.ReadOutbound<IByteBuffer>().Release();
            }
        }

        Assert.Equal(0, allocated);
    }

    /// <summary>A room of <paramref name="players"/> sessions, each on its own embedded channel (and so its own loop).</summary>
    private static (Room Room, EmbeddedChannel[] Channels, PlayerSession[] Members) RoomOf(int players)
    {
        var room = new Room("r");
        var channels = Enumerable.Range(0, players).Select(_ => new EmbeddedChannel(new ConnectionHandler())).ToArray();
        var members = channels
            .Select((channel, i) => new PlayerSession(TcpConnection.Of(channel), $"s{i}", $"p{i}", 1, null, TimeSpan.FromMilliseconds(100)))
            .ToArray();
        foreach (var member in members)
        {
            Assert.True(room.TryAdd(member));
        }

        return (room, channels, members);
    }

    private static byte[] ReadAll(IByteBuffer buffer)
    {
        var bytes = new byte[buffer.ReadableBytes];
        buffer.GetBytes(buffer.ReaderIndex, bytes);
        return bytes;
    }
}
