using System.Buffers;
using DotNetty.Buffers;

namespace GameProtocol.Pipeline;

/// <summary>Lets a serializer write straight into a heap <see cref="IByteBuffer"/>'s backing array.</summary>
internal sealed class ByteBufferWriter : IBufferWriter<byte>
{
    private const int MinimumGrowth = 256;
    private readonly IByteBuffer buffer;

    public ByteBufferWriter(IByteBuffer buffer)
    {
        if (!buffer.HasArray)
        {
            throw new ArgumentException("the buffer must be array-backed", nameof(buffer));
        }

        this.buffer = buffer;
    }

    public void Advance(int count) => buffer.SetWriterIndex(buffer.WriterIndex + count);

    public Memory<byte> GetMemory(int sizeHint = 0)
    {
        buffer.EnsureWritable(Math.Max(sizeHint, MinimumGrowth));
        return buffer.Array.AsMemory(buffer.ArrayOffset + buffer.WriterIndex, buffer.WritableBytes);
    }

    public Span<byte> GetSpan(int sizeHint = 0) => GetMemory(sizeHint).Span;
}
