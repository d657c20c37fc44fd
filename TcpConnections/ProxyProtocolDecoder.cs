using System.Buffers.Binary;
using System.Globalization;
using System.Net;
using System.Text;
using DotNetty.Buffers;
using DotNetty.Codecs;
using DotNetty.Transport.Channels;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace TcpConnections;

/// <summary>
/// Reads the PROXY protocol header that a load balancer in TCP mode puts before the client's bytes (HAProxy's
/// <c>send-proxy-v2</c> and <c>send-proxy</c>: version 2, binary, and version 1, text), so that the connection's
/// <see cref="TcpConnection.RemoteEndPoint"/>, and with it every log line and the close record, names the player
/// rather than the balancer. Then it leaves the pipeline and passes on whatever followed the header.
/// <para>
/// Put it right after <see cref="ConnectionHandler"/>, before any decoder. While it is in a pipeline every connection
/// must begin with a header, and one that does not is a protocol error: a client that reached the port directly could
/// otherwise claim any address. A <c>LOCAL</c> header (the balancer's own connection) and an unknown address family
/// keep the peer's address. One per channel: not sharable.
/// </para>
/// </summary>
public sealed class ProxyProtocolDecoder : ByteToMessageDecoder
{
    /// <summary>The longest version 1 line, CRLF included (the specification's bound).</summary>
    public const int MaxV1Bytes = 107;

    /// <summary>The longest version 2 header accepted: the fixed 16 bytes and up to this many more (addresses, TLVs).</summary>
    public const int MaxV2PayloadBytes = 2048;

    private static readonly byte[] V2Signature = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A];
    private static readonly byte[] V1Prefix = "PROXY "u8.ToArray();

    private readonly ILogger logger;

    public ProxyProtocolDecoder(ILogger? logger = null) => this.logger = logger ?? NullLogger.Instance;

    protected override void Decode(IChannelHandlerContext context, IByteBuffer input, List<object> output)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(input);
        var header = input.GetByte(input.ReaderIndex) == V2Signature[0] ? TryReadV2(input) : TryReadV1(input);
        if (header is not { } found)
        {
            return; // the rest of the header has not arrived yet
        }

        var connection = TcpConnection.Of(context.Channel);
        if (found.Client is { } client)
        {
            var proxy = connection.RemoteEndPoint;
            connection.SetClientEndPoint(client);
            if (logger.IsEnabled(LogLevel.Debug))
            {
                using (logger.BeginScope(connection.Id))
                {
                    ConnectionLog.Proxied(logger, connection.Id, connection.RemoteEndPoint, proxy, found.Version);
                }
            }
        }

        // The bytes after the header (a Hello in the same segment) go on up when the decoder leaves.
        context.Channel.Pipeline.Remove(this);
    }

    private static (IPEndPoint? Client, int Version)? TryReadV2(IByteBuffer input)
    {
        var readable = input.ReadableBytes;
        for (var i = 0; i < Math.Min(readable, V2Signature.Length); i++)
        {
            if (input.GetByte(input.ReaderIndex + i) != V2Signature[i])
            {
                throw NoHeader(input);
            }
        }

        if (readable < 16)
        {
            return null;
        }

        var start = input.ReaderIndex;
        var versionCommand = input.GetByte(start + 12);
        var family = input.GetByte(start + 13);
        var length = input.GetUnsignedShort(start + 14);
        if (versionCommand >> 4 != 2)
        {
            throw new CorruptedFrameException($"PROXY protocol version {versionCommand >> 4} is not 2");
        }

        if (length > MaxV2PayloadBytes)
        {
            throw new CorruptedFrameException($"PROXY protocol v2 header of {16 + length} bytes is longer than {16 + MaxV2PayloadBytes}");
        }

        if (readable < 16 + length)
        {
            return null;
        }

        var payload = new byte[length];
        input.GetBytes(start + 16, payload);
        input.SkipBytes(16 + length);
        var command = versionCommand & 0x0F;
        if (command == 0)
        {
            return (null, 2); // LOCAL: the balancer's own connection, e.g. a health check
        }

        if (command != 1)
        {
            throw new CorruptedFrameException($"PROXY protocol v2 command {command} is neither LOCAL nor PROXY");
        }

        // Only TCP over IPv4 or IPv6 names a client we can use; UNSPEC, UDP and UNIX keep the peer's address.
        return family switch
        {
            0x11 when length >= 12 => (new IPEndPoint(new IPAddress(payload.AsSpan(0, 4)), BinaryPrimitives.ReadUInt16BigEndian(payload.AsSpan(8))), 2),
            0x21 when length >= 36 => (new IPEndPoint(new IPAddress(payload.AsSpan(0, 16)), BinaryPrimitives.ReadUInt16BigEndian(payload.AsSpan(32))), 2),
            0x11 or 0x21 => throw new CorruptedFrameException($"PROXY protocol v2 address block of {length} bytes is too short for its family"),
            _ => (null, 2),
        };
    }

    private static (IPEndPoint? Client, int Version)? TryReadV1(IByteBuffer input)
    {
        var readable = input.ReadableBytes;
        for (var i = 0; i < Math.Min(readable, V1Prefix.Length); i++)
        {
            if (input.GetByte(input.ReaderIndex + i) != V1Prefix[i])
            {
                throw NoHeader(input);
            }
        }

        var end = input.IndexOf(input.ReaderIndex, input.ReaderIndex + Math.Min(readable, MaxV1Bytes), (byte)'\n');
        if (end < 0)
        {
            return readable >= MaxV1Bytes ? throw new CorruptedFrameException($"PROXY protocol v1 line longer than {MaxV1Bytes} bytes") : null;
        }

        var lineLength = end - input.ReaderIndex + 1;
        var line = input.ToString(input.ReaderIndex, lineLength, Encoding.ASCII);
        input.SkipBytes(lineLength);
        if (!line.EndsWith("\r\n", StringComparison.Ordinal))
        {
            throw new CorruptedFrameException("PROXY protocol v1 line does not end with CRLF");
        }

        // PROXY TCP4|TCP6 <source> <destination> <source port> <destination port>, or PROXY UNKNOWN ...
        var fields = line[..^2].Split(' ');
        if (fields.Length >= 2 && fields[1] == "UNKNOWN")
        {
            return (null, 1);
        }

        if (fields.Length != 6 || fields[1] is not ("TCP4" or "TCP6")
            || !IPAddress.TryParse(fields[2], out var address)
            || !ushort.TryParse(fields[4], NumberStyles.None, CultureInfo.InvariantCulture, out var port)
            || (fields[1] == "TCP4") != (address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork))
        {
            throw new CorruptedFrameException($"PROXY protocol v1 line is malformed: '{line[..^2]}'");
        }

        return (new IPEndPoint(address, port), 1);
    }

    private static CorruptedFrameException NoHeader(IByteBuffer input) =>
        new($"no PROXY protocol header (first byte 0x{input.GetByte(input.ReaderIndex):x2}): the server expects one from its load balancer (Server:ProxyProtocol)");
}
