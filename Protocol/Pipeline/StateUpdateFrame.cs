using System.Buffers;
using DotNetty.Buffers;
using MessagePack;

namespace GameProtocol.Pipeline;

/// <summary>
/// Writes a room's tick (a <see cref="StateUpdate"/> without AfterGap) as one whole frame, byte for byte what
/// <see cref="MessageCodec.EncodeFramed"/> makes of the message, without building it: no message or entry objects,
/// no formatter look-ups, and each player id encoded once for the player's life (<see cref="EncodeId"/>) instead of
/// once per tick. A room ticks 20 times a second for as long as it lives; this is its hot path.
/// </summary>
public static class StateUpdateFrame
{
    // [tag, [tick, time, [entries]]]: the union's header, the tag, the body's header, two int64s and an array32 header.
    private const int FixedBytes = 1 + 1 + 1 + 9 + 9 + 5;

    // One entry: [id, x, y, lastSeq] as fixarray, the encoded id, two float32s and an int64.
    private const int EntryBytesBeyondId = 1 + 5 + 5 + 9;

    /// <summary>A player id as its MessagePack string (header included), to hand to <see cref="Encode"/> on each tick.</summary>
    public static byte[] EncodeId(string playerId)
    {
        var output = new ArrayBufferWriter<byte>(playerId.Length + 5);
        var writer = new MessagePackWriter(output);
        writer.Write(playerId);
        writer.Flush();
        return output.WrittenSpan.ToArray();
    }

    /// <summary>
    /// One whole frame (length header included) in a new buffer from <paramref name="allocator"/>: tick
    /// <paramref name="tick"/> at <paramref name="serverTimeUnixMs"/> with <paramref name="players"/> in order.
    /// </summary>
    public static IByteBuffer Encode(IByteBufferAllocator allocator, long tick, long serverTimeUnixMs, ReadOnlySpan<Entry> players)
    {
        var capacity = TcpConnections.FrameDecoder.HeaderBytes + FixedBytes;
        foreach (var player in players)
        {
            capacity += player.EncodedId.Length + EntryBytesBeyondId;
        }

        var buffer = allocator.HeapBuffer(capacity);
        try
        {
            var start = buffer.WriterIndex;
            var body = buffer.Array.AsMemory(buffer.ArrayOffset + start + TcpConnections.FrameDecoder.HeaderBytes, capacity - TcpConnections.FrameDecoder.HeaderBytes);
            var written = Write(body, tick, serverTimeUnixMs, players);
            buffer.SetWriterIndex(start + TcpConnections.FrameDecoder.HeaderBytes + written);
            buffer.SetInt(start, written);
            return buffer;
        }
        catch
        {
            buffer.Release();
            throw;
        }
    }

    private static int Write(Memory<byte> body, long tick, long serverTimeUnixMs, ReadOnlySpan<Entry> players)
    {
        var output = new FixedWriter(body);
        var writer = new MessagePackWriter(output);
        writer.WriteArrayHeader(2);
        writer.Write(MessageTags.StateUpdate);
        writer.WriteArrayHeader(3);
        writer.Write(tick);
        writer.Write(serverTimeUnixMs);
        writer.WriteArrayHeader(players.Length);
        foreach (var player in players)
        {
            writer.WriteArrayHeader(4);
            writer.WriteRaw(player.EncodedId);
            writer.Write(player.X);
            writer.Write(player.Y);
            writer.Write(player.LastSeq);
        }

        writer.Flush();
        return output.Written;
    }

    /// <summary>One player's entry: its id as <see cref="EncodeId"/> made it, and where it is.</summary>
    public readonly record struct Entry(byte[] EncodedId, float X, float Y, long LastSeq);

    /// <summary>
    /// The buffer's room, sized beforehand to the largest encoding: the writer never needs more, and asking for more
    /// than is left is a bug in that sizing, not something to grow for.
    /// </summary>
    private sealed class FixedWriter(Memory<byte> memory) : IBufferWriter<byte>
    {
        public int Written { get; private set; }

        public void Advance(int count) => Written += count;

        public Memory<byte> GetMemory(int sizeHint = 0) =>
            memory.Length - Written >= Math.Max(sizeHint, 1)
                ? memory[Written..]
                : throw new InvalidOperationException($"a StateUpdate frame needs more than the {memory.Length} bytes it was sized for");

        public Span<byte> GetSpan(int sizeHint = 0) => GetMemory(sizeHint).Span;
    }
}
