using DotNetty.Buffers;
using DotNetty.Codecs;
using DotNetty.Transport.Channels;

namespace TcpConnections;

/// <summary>
/// Puts the 4-byte big-endian length in front of each outbound payload, as a separate buffer so the payload is not
/// copied (the transport gathers both into one write), and counts the frame on the channel's <see cref="TcpConnection"/>
/// when there is one. An empty buffer passes through untouched: it is a flush
/// marker, not a frame (a zero-length frame is a protocol error).
/// </summary>
public sealed class FramePrepender : MessageToMessageEncoder<IByteBuffer>
{
    private readonly int maxFrameBytes;

    public FramePrepender(int maxFrameBytes)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxFrameBytes, 1);
        this.maxFrameBytes = maxFrameBytes;
    }

    public override bool IsSharable => true;

    protected override void Encode(IChannelHandlerContext context, IByteBuffer message, List<object> output)
    {
        var length = message.ReadableBytes;
        if (length == 0)
        {
            output.Add(message.Retain());
            return;
        }

        if (length > maxFrameBytes)
        {
            // The peer would reject it; failing the write here names the culprit instead.
            throw new EncoderException($"outbound frame of {length} bytes exceeds the limit of {maxFrameBytes} bytes");
        }

        var header = context.Allocator.Buffer(FrameDecoder.HeaderBytes);
        header.WriteInt(length);
        output.Add(header);
        output.Add(message.Retain());

        TcpConnection.Find(context.Channel)?.CountFrameSent();
    }
}
