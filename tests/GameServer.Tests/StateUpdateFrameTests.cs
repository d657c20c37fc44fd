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
        var room = new Room("r");
        var channels = Enumerable.Range(0, 3).Select(_ => new EmbeddedChannel(new ConnectionHandler())).ToArray();
        var members = channels
            .Select((channel, i) => new PlayerSession(TcpConnection.Of(channel), $"s{i}", $"p{i}", 1, null, TimeSpan.FromMilliseconds(100)))
            .ToArray();
        foreach (var member in members)
        {
            Assert.True(room.TryAdd(member));
        }

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

        // One reference per member's slice and none left of the room's or the batch's: a reference taken too many
        // (or too few) at the tick shows here.
        Assert.All(sent, update => Assert.Same(sent[0].Unwrap(), update.Unwrap()));
        Assert.Equal(channels.Length, sent[0].ReferenceCount);

        foreach (var update in sent)
        {
            update.Release();
        }

        Assert.Equal(0, sent[0].Unwrap().ReferenceCount);
    }

    private static byte[] ReadAll(IByteBuffer buffer)
    {
        var bytes = new byte[buffer.ReadableBytes];
        buffer.GetBytes(buffer.ReaderIndex, bytes);
        return bytes;
    }
}
