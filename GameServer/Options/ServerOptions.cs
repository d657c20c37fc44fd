using System.Net;
using DotNetty.Common;
using Transport.Epoll;

using TcpConnections;

namespace GameServer.Options;

/// <summary>The listener and the connection-level limits. Section <c>Server</c>.</summary>
public sealed class ServerOptions : IValidatedOptions
{
    public const string Section = "Server";

    /// <summary>The address to bind; loopback by default so a sample server never listens on the world.</summary>
    public string Address { get; set; } = "127.0.0.1";

    /// <summary>0 picks an ephemeral port (tests).</summary>
    public int Port { get; set; } = 7777;

    public int Backlog { get; set; } = 1024;

    /// <summary>Threads that accept connections.</summary>
    public int AcceptThreads { get; set; } = 1;

    /// <summary>Threads that run the connection pipelines; 0 means one per core.</summary>
    public int WorkerThreads { get; set; }

    /// <summary>Largest frame payload either side may send; a bigger length header is a protocol error.</summary>
    public int MaxFrameBytes { get; set; } = GameProtocol.Framing.DefaultMaxFrameBytes;

    /// <summary>
    /// Every connection begins with a PROXY protocol header (v2 or v1) from the load balancer in front (HAProxy's
    /// <c>send-proxy-v2</c>), which names the real client for the logs and the close records. A connection without
    /// one is a protocol error, so turn it on only when every connection comes through the balancer (firewall the
    /// game port to it).
    /// </summary>
    public bool ProxyProtocol { get; set; }

    /// <summary>
    /// With <see cref="ProxyProtocol"/>: the balancers' networks (CIDR, e.g. <c>10.0.0.0/24</c>); a connection from any
    /// other address is refused as soon as its first bytes arrive, unparsed. Empty: any peer (the game port must then be firewalled).
    /// </summary>
    public string[] ProxyProtocolTrustedProxies { get; set; } = [];

    /// <summary>The parsed networks; an invalid one is left out here and named by <see cref="Validate"/> on start.</summary>
    public IReadOnlyList<IPNetwork> TrustedProxies =>
        [.. ProxyProtocolTrustedProxies.Select(n => IPNetwork.TryParse(n, out var network) ? network : (IPNetwork?)null).OfType<IPNetwork>()];

    /// <summary>Hello must arrive within this time of connecting.</summary>
    public int HandshakeTimeoutMs { get; set; } = 5000;

    /// <summary>How long host shutdown waits for every client to finish the Goodbye handshake before aborting the rest.</summary>
    public int ShutdownTimeoutMs { get; set; } = 10000;

    /// <summary>Outbound bytes queued for one peer above which it counts as not writable (producers back off).</summary>
    public int WriteBufferHighWaterMark { get; set; } = 64 * 1024;

    /// <summary>Outbound bytes below which a not-writable peer becomes writable again.</summary>
    public int WriteBufferLowWaterMark { get; set; } = 32 * 1024;

    /// <summary>A peer that stays not writable this long is not reading: it is aborted as slow_consumer.</summary>
    public int SlowConsumerTimeoutMs { get; set; } = 10000;

    /// <summary>
    /// <c>auto</c> (the default): the epoll transport on Linux, DotNetty's stock one elsewhere. <c>epoll</c>:
    /// Transport.Epoll, whose loop threads run epoll_wait themselves and which half-closes (Linux only).
    /// <c>sockets</c>: DotNetty's stock transport.
    /// </summary>
    public string Transport { get; set; } = "auto";

    /// <summary>
    /// DotNetty's buffer leak detector, process-wide: <c>disabled</c> (the default), <c>simple</c>, <c>advanced</c>
    /// or <c>paranoid</c>. Even <c>simple</c> captures a stack trace (with file and line lookup) for one buffer in 128,
    /// which measured about 9 % of the server's CPU at 60k messages/s; turn it on to hunt a leak, and in tests.
    /// </summary>
    public string LeakDetection { get; set; } = "disabled";

    public bool UsesEpoll => EpollTransport.IsChosenBy(Transport);

    public ResourceLeakDetector.DetectionLevel LeakDetectionLevel =>
        Enum.Parse<ResourceLeakDetector.DetectionLevel>(LeakDetection, ignoreCase: true);

    private bool Is(string transport) => string.Equals(Transport, transport, StringComparison.OrdinalIgnoreCase);

    public IEnumerable<string> Validate()
    {
        if (WriteBufferLowWaterMark > WriteBufferHighWaterMark)
        {
            yield return OptionErrors.Invalid(Section, nameof(WriteBufferLowWaterMark), WriteBufferLowWaterMark, $"at most Server:WriteBufferHighWaterMark ({WriteBufferHighWaterMark})");
        }

        if (!IPAddress.TryParse(Address, out _))
        {
            yield return OptionErrors.Invalid(Section, nameof(Address), Address, "an IPv4 or IPv6 address");
        }

        foreach (var network in ProxyProtocolTrustedProxies.Where(n => !IPNetwork.TryParse(n, out _)))
        {
            yield return OptionErrors.Invalid(Section, nameof(ProxyProtocolTrustedProxies), network, "a network in CIDR form, e.g. 10.0.0.0/24");
        }

        if (!Is("auto") && !Is("sockets") && !Is("epoll"))
        {
            yield return OptionErrors.Invalid(Section, nameof(Transport), Transport, "'auto', 'sockets' or 'epoll'");
        }
        else if (Is("epoll") && !OperatingSystem.IsLinux())
        {
            yield return OptionErrors.Invalid(Section, nameof(Transport), Transport, "'sockets' on this system: epoll is Linux only");
        }

        if (!Enum.GetNames<ResourceLeakDetector.DetectionLevel>().Contains(LeakDetection, StringComparer.OrdinalIgnoreCase))
        {
            yield return OptionErrors.Invalid(Section, nameof(LeakDetection), LeakDetection, "'disabled', 'simple', 'advanced' or 'paranoid'");
        }

        foreach (var error in OptionErrors.Range(Section, nameof(Port), Port, 0, 65535))
        {
            yield return error;
        }

        foreach (var error in OptionErrors.Range(Section, nameof(Backlog), Backlog, 1, 65535)
            .Concat(OptionErrors.Range(Section, nameof(AcceptThreads), AcceptThreads, 1, 64))
            .Concat(OptionErrors.Range(Section, nameof(WorkerThreads), WorkerThreads, 0, 1024))
            .Concat(OptionErrors.Range(Section, nameof(MaxFrameBytes), MaxFrameBytes, 64, 16 * 1024 * 1024))
            .Concat(OptionErrors.Range(Section, nameof(HandshakeTimeoutMs), HandshakeTimeoutMs, 1, 600_000))
            .Concat(OptionErrors.Range(Section, nameof(ShutdownTimeoutMs), ShutdownTimeoutMs, 1, 600_000))
            .Concat(OptionErrors.Range(Section, nameof(WriteBufferHighWaterMark), WriteBufferHighWaterMark, 1024, 64 * 1024 * 1024))
            .Concat(OptionErrors.Range(Section, nameof(WriteBufferLowWaterMark), WriteBufferLowWaterMark, 512, 64 * 1024 * 1024))
            .Concat(OptionErrors.Range(Section, nameof(SlowConsumerTimeoutMs), SlowConsumerTimeoutMs, 1, 600_000)))
        {
            yield return error;
        }
    }
}
