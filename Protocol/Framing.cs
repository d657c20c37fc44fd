namespace GameProtocol;

/// <summary>Frame layout: a 4-byte big-endian unsigned length N, then N bytes of MessagePack payload.</summary>
public static class Framing
{
    /// <summary>Bytes of the length prefix.</summary>
    public const int HeaderBytes = 4;

    /// <summary>The default for <c>Server:MaxFrameBytes</c>; a length of 0 or above the limit is a protocol error.</summary>
    public const int DefaultMaxFrameBytes = 65536;

    /// <summary>Version 1: one connection is one session.</summary>
    public const int ProtocolVersion1 = 1;

    /// <summary>Version 2: numbered, acknowledged reliable messages and resumable sessions.</summary>
    public const int ProtocolVersion2 = 2;

    /// <summary>The newest version this code speaks; a server accepts every version from 1 to this.</summary>
    public const int ProtocolVersion = ProtocolVersion2;

    /// <summary>Whether a message travels inside <see cref="Reliable"/> in version 2 (all but StateUpdate, Ping, Pong and the session's own frames).</summary>
    public static bool IsReliable(IMessage message) =>
        message is Echo or JoinRoom or Move or StreamRequest or StreamItem or Presence or Error;
}
