using System.Buffers.Binary;

namespace TcpConnections;

/// <summary>
/// The few fields of the kernel's <c>struct tcp_info</c> (Linux, <c>getsockopt(IPPROTO_TCP, TCP_INFO)</c>) that tell
/// whether our output is stuck and whether the peer's kernel still answers. Read with
/// <see cref="SocketAccess.TryGetTcpInfo(DotNetty.Transport.Channels.IChannel, out TcpInfo)"/>.
/// </summary>
/// <param name="Retransmits">
/// <c>tcpi_retransmits</c>: retransmission timeouts in a row since the peer last acknowledged new data. A live peer
/// on a loss-free path keeps it at 0; a dead one makes it count up, one per (doubling) timeout.
/// </param>
/// <param name="Probes">
/// <c>tcpi_probes</c>: zero-window probes sent since the last ACK of any kind. A live peer whose window is shut answers
/// them, but its kernel answers at most one such probe per <c>net.ipv4.tcp_invalid_ratelimit</c> (500 ms), so one
/// can stay unanswered; a dead peer answers none and the count grows.
/// </param>
/// <param name="Backoff"><c>tcpi_backoff</c>: how many times the probe or retransmission interval has doubled.</param>
/// <param name="UnackedSegments"><c>tcpi_unacked</c>: segments sent and not yet acknowledged.</param>
/// <param name="SinceLastAck"><c>tcpi_last_ack_recv</c>: time since the peer's kernel last sent an ACK (any ACK).</param>
/// <param name="NotSentBytes"><c>tcpi_notsent_bytes</c>: bytes in the send buffer that were never sent.</param>
public readonly record struct TcpInfo(
    int Retransmits,
    int Probes,
    int Backoff,
    int UnackedSegments,
    TimeSpan SinceLastAck,
    long NotSentBytes)
{
    /// <summary>getsockopt level and option (linux/tcp.h).</summary>
    internal const int IpProtoTcp = 6;
    internal const int OptionName = 11;

    /// <summary>
    /// Room for the whole structure of any kernel this runs on; the kernel fills in as much as it has and says how much.
    /// </summary>
    internal const int BufferBytes = 512;

    // Offsets in struct tcp_info (linux/tcp.h), checked with offsetof (gcc, x86-64). Every field up to these is a
    // naturally aligned u8, u32 or u64, so no ABI pads them differently: u8 tcpi_retransmits at 2, tcpi_probes at 3,
    // tcpi_backoff at 4; u32 tcpi_unacked at 24, tcpi_last_ack_recv at 56, tcpi_notsent_bytes at 144 (Linux 4.6+).
    private const int RetransmitsOffset = 2;
    private const int ProbesOffset = 3;
    private const int BackoffOffset = 4;
    private const int UnackedOffset = 24;
    private const int LastAckRecvOffset = 56;
    private const int NotSentBytesOffset = 144;

    /// <summary>The shortest answer that holds every field read here.</summary>
    internal const int MinimumBytes = NotSentBytesOffset + sizeof(uint);

    /// <summary>Decodes what the kernel returned; false when it is too short (a kernel older than 4.6).</summary>
    internal static bool TryParse(ReadOnlySpan<byte> value, out TcpInfo info)
    {
        if (value.Length < MinimumBytes)
        {
            info = default;
            return false;
        }

        // The kernel writes the structure in the machine's byte order.
        info = new TcpInfo(
            value[RetransmitsOffset],
            value[ProbesOffset],
            value[BackoffOffset],
            (int)ReadU32(value, UnackedOffset),
            TimeSpan.FromMilliseconds(ReadU32(value, LastAckRecvOffset)),
            ReadU32(value, NotSentBytesOffset));
        return true;
    }

    private static uint ReadU32(ReadOnlySpan<byte> value, int offset) =>
        BitConverter.IsLittleEndian
            ? BinaryPrimitives.ReadUInt32LittleEndian(value[offset..])
            : BinaryPrimitives.ReadUInt32BigEndian(value[offset..]);
}
