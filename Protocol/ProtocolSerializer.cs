using System.Buffers;
using MessagePack;

namespace GameProtocol;

/// <summary>
/// The MessagePack options every reader and writer of this protocol uses. Frames come from untrusted peers, so
/// <see cref="MessagePackSecurity.UntrustedData"/> is on (hash-collision-safe maps, bounded depth).
/// </summary>
public static class ProtocolSerializer
{
    /// <summary>Deepest nesting a legitimate message needs is 4 (StateUpdate → players → entry); 16 leaves room.</summary>
    public const int MaxObjectGraphDepth = 16;

    public static MessagePackSerializerOptions Options { get; } = MessagePackSerializerOptions.Standard
        .WithSecurity(MessagePackSecurity.UntrustedData.WithMaximumObjectGraphDepth(MaxObjectGraphDepth));

    /// <summary>Serialises one message as the union <c>[tag, body]</c> (no frame header).</summary>
    public static byte[] Serialize(IMessage message) => MessagePackSerializer.Serialize(message, Options);

    /// <summary>Serialises one message into a writer (no frame header).</summary>
    public static void Serialize(IBufferWriter<byte> writer, IMessage message) =>
        MessagePackSerializer.Serialize(writer, message, Options);

    /// <summary>
    /// Reads one message from a whole frame payload. Throws <see cref="ProtocolViolationException"/> for anything
    /// that is not exactly one known message: an unknown tag (which MessagePack-CSharp turns into null), wrong
    /// field types, trailing bytes, or a payload that breaks the security limits.
    /// </summary>
    public static IMessage Deserialize(ReadOnlyMemory<byte> payload)
    {
        IMessage? message;
        int consumed;
        try
        {
            message = MessagePackSerializer.Deserialize<IMessage>(payload, Options, out consumed);
        }
        catch (MessagePackSerializationException ex)
        {
            throw new ProtocolViolationException(ProtocolErrorCodes.BadMessage, Describe(ex), ex);
        }

        if (message is null)
        {
            throw new ProtocolViolationException(ProtocolErrorCodes.UnknownMessage, "unknown message tag or nil message");
        }

        if (consumed != payload.Length)
        {
            throw new ProtocolViolationException(
                ProtocolErrorCodes.BadMessage, $"{payload.Length - consumed} trailing bytes after the message");
        }

        return message;
    }

    private static string Describe(Exception ex)
    {
        // The innermost message names the real problem (e.g. "Unexpected msgpack code 161 (fixstr) encountered").
        var inner = ex;
        while (inner.InnerException is not null)
        {
            inner = inner.InnerException;
        }

        return inner.Message;
    }
}
