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
        var buffer = allocator.HeapBuffer(FrameBytesAtMost(players));
        try
        {
            Write(buffer, tick, serverTimeUnixMs, players);
            return buffer;
        }
        catch
        {
            buffer.Release();
            throw;
        }
    }

    /// <summary>The most bytes <see cref="Write"/> can need for <paramref name="players"/>, length header included.</summary>
    public static int FrameBytesAtMost(ReadOnlySpan<Entry> players)
    {
        var bytes = TcpConnections.FrameDecoder.HeaderBytes + FixedBytes;
        foreach (var player in players)
        {
            bytes += player.EncodedId.Length + EntryBytesBeyondId;
        }

        return bytes;
    }

    /// <summary>
    /// Appends one whole frame (length header included) at <paramref name="buffer"/>'s writer index, as
    /// <see cref="Encode"/> makes it, into a heap buffer (one with a backing array) the caller owns and reuses; it is
    /// grown to <see cref="FrameBytesAtMost"/> bytes of room if it has less.
    /// </summary>
    public static void Write(IByteBuffer buffer, long tick, long serverTimeUnixMs, ReadOnlySpan<Entry> players)
    {
        ArgumentNullException.ThrowIfNull(buffer);
        var bytes = FrameBytesAtMost(players);
        buffer.EnsureWritable(bytes);
        var start = buffer.WriterIndex;
        var body = buffer.Array.AsMemory(buffer.ArrayOffset + start + TcpConnections.FrameDecoder.HeaderBytes, bytes - TcpConnections.FrameDecoder.HeaderBytes);
        var written = WriteBody(body, tick, serverTimeUnixMs, players);
        buffer.SetWriterIndex(start + TcpConnections.FrameDecoder.HeaderBytes + written);
        buffer.SetInt(start, written);
    }

    // One writer per thread, pointed at each frame's room in turn: a room's tick would otherwise allocate one.
    [ThreadStatic]
    private static FixedWriter? threadWriter;

    private static int WriteBody(Memory<byte> body, long tick, long serverTimeUnixMs, ReadOnlySpan<Entry> players)
    {
        var output = threadWriter ??= new FixedWriter();
        output.Reset(body);
        try
        {
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
        finally
        {
            output.Reset(Memory<byte>.Empty); // the buffer's array is not kept reachable from the thread
        }
    }

    /// <summary>One player's entry: its id as <see cref="EncodeId"/> made it, and where it is.</summary>
    public readonly record struct Entry(byte[] EncodedId, float X, float Y, long LastSeq);

    /// <summary>
    /// The buffer's room, sized beforehand to the largest encoding: the writer never needs more, and asking for more
    /// than is left is a bug in that sizing, not something to grow for.
    /// </summary>
    private sealed class FixedWriter : IBufferWriter<byte>
    {
        private Memory<byte> memory;

        public int Written { get; private set; }

        public void Reset(Memory<byte> room)
        {
            memory = room;
            Written = 0;
        }

        public void Advance(int count) => Written += count;

        public Memory<byte> GetMemory(int sizeHint = 0) =>
            memory.Length - Written >= Math.Max(sizeHint, 1)
                ? memory[Written..]
                : throw new InvalidOperationException($"a StateUpdate frame needs more than the {memory.Length} bytes it was sized for");

        public Span<byte> GetSpan(int sizeHint = 0) => GetMemory(sizeHint).Span;
    }
}
