using DotNetty.Buffers;
using DotNetty.Codecs;
using DotNetty.Transport.Channels;

namespace TcpConnections;

/// <summary>
/// Splits the byte stream into frames: a 4-byte big-endian unsigned length N, then N bytes. N = 0 and N above the
/// limit are rejected from the header alone, before anything is allocated for the body, so a forged 4 GB length
/// costs nothing. After the first bad header the rest of the stream is discarded: bytes after a broken frame mean
/// nothing. Emits each payload as a retained slice of the read buffer (no copy), and counts it on the channel's
/// <see cref="TcpConnection"/> when there is one.
/// </summary>
public sealed class FrameDecoder : ByteToMessageDecoder
{
    public const int HeaderBytes = 4;

    private readonly int maxFrameBytes;
    private bool failed;

    public FrameDecoder(int maxFrameBytes)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxFrameBytes, 1);
        this.maxFrameBytes = maxFrameBytes;
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
        TcpConnection.Find(context.Channel)?.CountFramesReceived(1);
    }
}
