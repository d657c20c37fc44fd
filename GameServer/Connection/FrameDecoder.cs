using DotNetty.Buffers;
using DotNetty.Codecs;
using DotNetty.Transport.Channels;

namespace GameServer.Connection;

/// <summary>
/// Splits the byte stream into frames: a 4-byte big-endian unsigned length N, then N bytes. N = 0 and N above the
/// limit are rejected from the header alone, before anything is allocated for the body, so a forged 4 GB length
/// costs nothing. After the first bad header the rest of the stream is discarded: bytes after a broken frame mean
/// nothing. Emits each payload as a retained slice of the read buffer (no copy).
/// </summary>
public sealed class FrameDecoder : ByteToMessageDecoder
{
    public const int HeaderBytes = 4;

    private readonly int maxFrameBytes;
    private readonly ConnectionMetrics metrics;
    private bool failed;

    public FrameDecoder(int maxFrameBytes, ConnectionMetrics? metrics = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxFrameBytes, 1);
        this.maxFrameBytes = maxFrameBytes;
        this.metrics = metrics ?? ConnectionMetrics.None;
    }

    public override void ChannelRead(IChannelHandlerContext context, object message)
    {
        var state = ConnectionState.Of(context.Channel);
        var bytes = message is IByteBuffer buffer ? buffer.ReadableBytes : 0;
        var framesBefore = state.FramesReceived;
        state.BytesReceived += bytes;
        try
        {
            base.ChannelRead(context, message);
        }
        finally
        {
            metrics.Received((int)(state.FramesReceived - framesBefore), bytes);
        }
    }

    protected override void Decode(IChannelHandlerContext context, IByteBuffer input, List<object> output)
    {
        if (failed)
        {
            input.SkipBytes(input.ReadableBytes);
            return;
        }

        if (input.ReadableBytes < HeaderBytes)
        {
            return;
        }

        var length = input.GetUnsignedInt(input.ReaderIndex);
        if (length == 0 || length > (uint)maxFrameBytes)
        {
            failed = true;
            input.SkipBytes(input.ReadableBytes);
            if (length == 0)
            {
                throw new CorruptedFrameException("frame length 0");
            }

            throw new TooLongFrameException($"frame length {length} exceeds the limit of {maxFrameBytes} bytes");
        }

        if (input.ReadableBytes < HeaderBytes + (long)length)
        {
            return;
        }

        input.SkipBytes(HeaderBytes);
        output.Add(input.ReadRetainedSlice((int)length));
        ConnectionState.Of(context.Channel).FramesReceived++;
    }
}
