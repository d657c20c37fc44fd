using DotNetty.Buffers;
using DotNetty.Codecs;
using DotNetty.Transport.Channels;
using GameProtocol;

namespace GameProtocol.Pipeline;

/// <summary>
/// Frame payload ⇄ <see cref="IMessage"/>, with the protocol's MessagePack options (untrusted data). A payload that
/// is not exactly one known message raises <see cref="ProtocolViolationException"/>; an unknown tag is never
/// passed on as null. Pre-encoded <see cref="IByteBuffer"/>s pass through outbound untouched, so a broadcast can be
/// serialised once and shared.
/// </summary>
public sealed class MessageCodec : MessageToMessageCodec<IByteBuffer, IMessage>
{
    private const int InitialEncodeBytes = 256;

    public override bool IsSharable => true;

    /// <summary>
    /// Serialises a message behind its 4-byte big-endian length header: one whole frame, for sending past the pipeline
    /// (<see cref="TcpConnections.TcpConnection.TrySendFrameNow"/>). Skip the header to write the payload through the
    /// pipeline instead, whose prepender adds its own.
    /// </summary>
    public static IByteBuffer EncodeFramed(IByteBufferAllocator allocator, IMessage message) => Encode(allocator, message, framed: true);

    /// <summary>Serialises a message into a new buffer from <paramref name="allocator"/> (no frame header).</summary>
    public static IByteBuffer Encode(IByteBufferAllocator allocator, IMessage message) => Encode(allocator, message, framed: false);

    private static IByteBuffer Encode(IByteBufferAllocator allocator, IMessage message, bool framed)
    {
        var buffer = allocator.HeapBuffer(InitialEncodeBytes);
        try
        {
            if (framed)
            {
                buffer.WriteInt(0); // the length, once it is known
            }

            ProtocolSerializer.Serialize(new ByteBufferWriter(buffer), message);
            if (framed)
            {
                buffer.SetInt(buffer.ReaderIndex, buffer.ReadableBytes - TcpConnections.FrameDecoder.HeaderBytes);
            }

            return buffer;
        }
        catch
        {
            buffer.Release();
            throw;
        }
    }

    protected override void Encode(IChannelHandlerContext ctx, IMessage msg, List<object> output) =>
        output.Add(Encode(ctx.Allocator, msg));

    protected override void Decode(IChannelHandlerContext ctx, IByteBuffer msg, List<object> output)
    {
        var length = msg.ReadableBytes;
        ReadOnlyMemory<byte> payload = msg.HasArray
            ? new ReadOnlyMemory<byte>(msg.Array, msg.ArrayOffset + msg.ReaderIndex, length)
            : msg.GetIoBuffer(msg.ReaderIndex, length).ToArray();

        // Strings and byte arrays are copied out by the deserializer, so the frame can be released afterwards.
        output.Add(ProtocolSerializer.Deserialize(payload));
        msg.SkipBytes(length);
    }
}
