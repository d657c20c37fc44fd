namespace GameProtocol;

/// <summary>Frame layout: a 4-byte big-endian unsigned length N, then N bytes of MessagePack payload.</summary>
public static class Framing
{
    /// <summary>Bytes of the length prefix.</summary>
    public const int HeaderBytes = 4;

    /// <summary>The default for <c>Server:MaxFrameBytes</c>; a length of 0 or above the limit is a protocol error.</summary>
    public const int DefaultMaxFrameBytes = 65536;

    /// <summary>The protocol version a Hello must carry.</summary>
    public const int ProtocolVersion = 1;
}
