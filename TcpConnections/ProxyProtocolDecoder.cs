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
/// keep the peer's address. With <c>trustedProxies</c> given, a connection whose socket peer is in none of them is
/// refused before its first byte is read: the header is believed only from the balancer. One per channel: not
/// sharable. It sets no deadline of its own: a peer that sends half a header is ended by the pipeline's handshake
/// timeout (the game's <c>Server:HandshakeTimeoutMs</c>), which every pipeline that uses it needs.
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
    private readonly IReadOnlyList<IPNetwork> trustedProxies;
    private bool failed;

    public ProxyProtocolDecoder(ILogger? logger = null, IReadOnlyList<IPNetwork>? trustedProxies = null)
    {
        this.logger = logger ?? NullLogger.Instance;
        this.trustedProxies = trustedProxies ?? [];
    }

    protected override void Decode(IChannelHandlerContext context, IByteBuffer input, List<object> output)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(input);

        // After a bad start the connection is closing: what the peer still sends is drained, not parsed again (each
        // parse would throw once more through the pipeline while the graceful close reads to the peer's FIN).
        if (failed)
        {
            input.SkipBytes(input.ReadableBytes);
            return;
        }

        (IPEndPoint? Client, int Version)? header;
        try
        {
            if (trustedProxies.Count > 0 && !IsTrusted(context.Channel.RemoteAddress))
            {
                throw new ProxyProtocolException($"{TcpConnection.FormatEndPoint(context.Channel.RemoteAddress)} is not a trusted proxy");
            }

            header = input.GetByte(input.ReaderIndex) == V2Signature[0] ? TryReadV2(input) : TryReadV1(input);
        }
        catch (ProxyProtocolException)
        {
            failed = true;
            input.SkipBytes(input.ReadableBytes);
            throw;
        }

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
            throw new ProxyProtocolException($"PROXY protocol version {versionCommand >> 4} is not 2");
        }

        if (length > MaxV2PayloadBytes)
        {
            throw new ProxyProtocolException($"PROXY protocol v2 header of {16 + length} bytes is longer than {16 + MaxV2PayloadBytes}");
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
            throw new ProxyProtocolException($"PROXY protocol v2 command {command} is neither LOCAL nor PROXY");
        }

        // Only TCP over IPv4 or IPv6 names a client we can use; UNSPEC, UDP and UNIX keep the peer's address; any other
        // family and protocol byte is invalid (the specification: receivers must reject it).
        return family switch
        {
            0x11 when length >= 12 => (new IPEndPoint(new IPAddress(payload.AsSpan(0, 4)), BinaryPrimitives.ReadUInt16BigEndian(payload.AsSpan(8))), 2),
            0x21 when length >= 36 => (new IPEndPoint(new IPAddress(payload.AsSpan(0, 16)), BinaryPrimitives.ReadUInt16BigEndian(payload.AsSpan(32))), 2),
            0x11 or 0x21 => throw new ProxyProtocolException($"PROXY protocol v2 address block of {length} bytes is too short for its family"),
            0x00 or 0x12 or 0x22 or 0x31 or 0x32 => (null, 2),
            _ => throw new ProxyProtocolException($"PROXY protocol v2 family and protocol 0x{family:x2} is invalid"),
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
            return readable >= MaxV1Bytes ? throw new ProxyProtocolException($"PROXY protocol v1 line longer than {MaxV1Bytes} bytes") : null;
        }

        var lineLength = end - input.ReaderIndex + 1;
        var line = input.ToString(input.ReaderIndex, lineLength, Encoding.ASCII);
        input.SkipBytes(lineLength);
        if (!line.EndsWith("\r\n", StringComparison.Ordinal))
        {
            throw new ProxyProtocolException("PROXY protocol v1 line does not end with CRLF");
        }

        // PROXY TCP4|TCP6 <source> <destination> <source port> <destination port>, or PROXY UNKNOWN ...
        var fields = line[..^2].Split(' ');
        if (fields.Length >= 2 && fields[1] == "UNKNOWN")
        {
            return (null, 1);
        }

        // Exactly as the specification writes it: canonical addresses (no leading zeros, which some parsers read as
        // octal; no IPv6 scope), both of the named family, ports without leading zeros.
        var v4 = fields.Length > 1 && fields[1] == "TCP4";
        if (fields.Length != 6 || fields[1] is not ("TCP4" or "TCP6")
            || !TryParseAddress(fields[2], v4, out var address) || !TryParseAddress(fields[3], v4, out _)
            || !TryParsePort(fields[4], out var port) || !TryParsePort(fields[5], out _))
        {
            throw new ProxyProtocolException($"PROXY protocol v1 line is malformed: '{Printable(line[..^2])}'");
        }

        return (new IPEndPoint(address, port), 1);
    }

    private bool IsTrusted(EndPoint? peer)
    {
        if (peer is not IPEndPoint ip)
        {
            return false;
        }

        var address = ip.Address.IsIPv4MappedToIPv6 ? ip.Address.MapToIPv4() : ip.Address;
        return trustedProxies.Any(n => n.Contains(address));
    }

    private static bool TryParseAddress(string text, bool v4, out IPAddress address)
    {
        address = IPAddress.None;
        if (v4)
        {
            var parts = text.Split('.');
            return parts.Length == 4
                && parts.All(p => p.Length is > 0 and <= 3 && p.All(char.IsAsciiDigit) && (p.Length == 1 || p[0] != '0') && int.Parse(p, CultureInfo.InvariantCulture) <= 255)
                && IPAddress.TryParse(text, out address!);
        }

        return text.Length > 0 && text.All(c => char.IsAsciiHexDigit(c) || c is ':' or '.')
            && IPAddress.TryParse(text, out address!) && address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6;
    }

    private static bool TryParsePort(string text, out int port)
    {
        port = 0;
        return text.Length is > 0 and <= 5 && text.All(char.IsAsciiDigit) && (text.Length == 1 || text[0] != '0')
            && (port = int.Parse(text, CultureInfo.InvariantCulture)) <= 65535;
    }

    /// <summary>The peer's bytes as they may go into a log line and an Error frame: printable ASCII, the rest escaped.</summary>
    private static string Printable(string text) =>
        string.Concat(text.Select(c => c is >= ' ' and <= '~' ? c.ToString() : $"\\x{(int)c:x2}"));

    private static ProxyProtocolException NoHeader(IByteBuffer input) =>
        new($"no PROXY protocol header (first byte 0x{input.GetByte(input.ReaderIndex):x2})");
}

/// <summary>A connection that does not begin with a good PROXY protocol header: a protocol error of its own kind.</summary>
public sealed class ProxyProtocolException(string message) : CorruptedFrameException(message);
