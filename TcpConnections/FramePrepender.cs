using DotNetty.Buffers;
using DotNetty.Codecs;
using DotNetty.Transport.Channels;

namespace TcpConnections;

/// <summary>
/// Puts the 4-byte big-endian length in front of each outbound payload and counts the frame on the channel's
/// <see cref="TcpConnection"/> when there is one. A small payload is copied behind its header into one buffer: one
/// write down the pipeline instead of two joined by a combined task, which costs more than copying a few hundred
/// bytes (most game messages, and every room update, are that small). A larger one keeps its own buffer and gets a
/// separate header (the transport gathers both into one write), so it is never copied. An empty buffer passes through
/// untouched: it is a flush marker, not a frame (a zero-length frame is a protocol error).
/// </summary>
public sealed class FramePrepender : MessageToMessageEncoder<IByteBuffer>
{
    /// <summary>Payloads up to this size are copied behind their header (see the class remarks).</summary>
    public const int CopyBelowBytes = 1024;

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

        if (length <= CopyBelowBytes)
        {
            var frame = context.Allocator.Buffer(FrameDecoder.HeaderBytes + length);
            frame.WriteInt(length);
            frame.WriteBytes(message, message.ReaderIndex, length);
            output.Add(frame);
        }
        else
        {
            var header = context.Allocator.Buffer(FrameDecoder.HeaderBytes);
            header.WriteInt(length);
            output.Add(header);
            output.Add(message.Retain());
        }

        TcpConnection.Find(context.Channel)?.CountFrameSent();
    }
}
