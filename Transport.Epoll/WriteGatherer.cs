using DotNetty.Buffers;
using DotNetty.Transport.Channels;

namespace Transport.Epoll;

/// <summary>
/// Collects the memory of the head of a channel's flushed backlog for one gathering write: at most a number of
/// buffers and (after the first) of bytes, each taken from its buffer's reader index. One per event loop, used by one
/// write at a time on the loop's thread, and empty again when that write returns.
/// </summary>
/// <remarks>
/// DotNetty's <c>ChannelOutboundBuffer.GetSharedBufferList</c> does the same work, but it has two traps: its list is
/// shared by every channel of the thread and only appended to, so a write that returns without clearing it hands its
/// bytes to the next channel; and it takes a composite's memory with the parameterless <c>GetIoBuffers()</c>, which
/// DotNetty 0.7.6's leak-aware composite wrapper (given to one composite in 128 under the default leak detection)
/// computes from a reader index that stays 0, so after a partial write the composite's start is sent again.
/// </remarks>
internal sealed class WriteGatherer : ChannelOutboundBuffer.IMessageProcessor
{
    private readonly List<ArraySegment<byte>> segments;
    private readonly int maxCount;
    private long maxBytes;

    public WriteGatherer(int maxCount)
    {
        this.maxCount = maxCount;
        segments = new List<ArraySegment<byte>>(maxCount);
    }

    public List<ArraySegment<byte>> Segments => segments;

    /// <summary>Bytes in <see cref="Segments"/>.</summary>
    public long Bytes { get; private set; }

    /// <summary>Fills <see cref="Segments"/> from the head of <paramref name="input"/>'s flushed messages.</summary>
    public void Gather(ChannelOutboundBuffer input, long maxGatheredBytes)
    {
        maxBytes = maxGatheredBytes;
        input.ForEachFlushedMessage(this);
    }

    public void Clear()
    {
        segments.Clear();
        Bytes = 0;
    }

    bool ChannelOutboundBuffer.IMessageProcessor.ProcessMessage(object msg)
    {
        var buffer = (IByteBuffer)msg; // the channel accepts nothing else
        var readable = buffer.ReadableBytes;
        if (readable == 0)
        {
            return true;
        }

        if (segments.Count > 0 && Bytes + readable > maxBytes)
        {
            return false; // the first buffer always goes, so a write makes progress whatever its size
        }

        var index = buffer.ReaderIndex;
        if (buffer.IoBufferCount == 1)
        {
            Add(buffer.GetIoBuffer(index, readable));
        }
        else
        {
            foreach (var segment in buffer.GetIoBuffers(index, readable))
            {
                if (segments.Count == maxCount)
                {
                    return false; // a part of this buffer goes now, the rest in the next write
                }

                if (segment.Count > 0)
                {
                    Add(segment);
                }
            }
        }

        return segments.Count < maxCount;
    }

    private void Add(ArraySegment<byte> segment)
    {
        segments.Add(segment);
        Bytes += segment.Count;
    }
}
