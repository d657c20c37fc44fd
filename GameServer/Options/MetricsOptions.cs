using System.Net;
using TcpConnections;

namespace GameServer.Options;

/// <summary>
/// The operator's HTTP listener (<c>/metrics</c>, <c>/healthz</c>, <c>/readyz</c>) and the optional OTLP push.
/// Section <c>Metrics</c>.
/// </summary>
public sealed class MetricsOptions : IValidatedOptions
{
    public const string Section = "Metrics";

    /// <summary>
    /// The address the listener binds. Loopback by default: metrics and probes are for the operator, not the players'
    /// network. <c>0.0.0.0</c> (or <c>::</c>) lets a Prometheus on another host or in a container scrape.
    /// </summary>
    public string Address { get; set; } = "127.0.0.1";

    /// <summary>Port of <c>http://{Address}:{Port}/metrics</c> and the probes; 0 turns the listener off.</summary>
    public int Port { get; set; } = 9464;

    /// <summary>The <c>service.name</c> resource attribute: Prometheus's <c>target_info</c> and every OTLP point carry it.</summary>
    public string ServiceName { get; set; } = "gameserver";

    /// <summary>Pushes the same metrics to an OpenTelemetry collector when its endpoint is set.</summary>
    public OtlpOptions Otlp { get; set; } = new();

    public IPAddress ListenAddress => IPAddress.Parse(Address);

    public IEnumerable<string> Validate()
    {
        if (!IPAddress.TryParse(Address, out _))
        {
            yield return OptionErrors.Invalid(Section, nameof(Address), Address, "an IP address such as 127.0.0.1, 0.0.0.0 or ::");
        }

        foreach (var error in OptionErrors.Range(Section, nameof(Port), Port, 0, 65535))
        {
            yield return error;
        }

        if (string.IsNullOrWhiteSpace(ServiceName))
        {
            yield return OptionErrors.Invalid(Section, nameof(ServiceName), ServiceName, "a non-empty name");
        }

        foreach (var error in Otlp.Validate())
        {
            yield return error;
        }
    }
}

/// <summary>Section <c>Metrics:Otlp</c>: an OTLP metrics exporter beside the Prometheus endpoint, off by default.</summary>
public sealed class OtlpOptions
{
    private const string Section = "Metrics:Otlp";

    /// <summary>
    /// The collector, e.g. <c>http://otel-collector:4317</c> (gRPC) or <c>http://otel-collector:4318/v1/metrics</c>
    /// (HTTP). Empty: no push.
    /// </summary>
    public string? Endpoint { get; set; }

    /// <summary><c>grpc</c> (the default) or <c>http/protobuf</c>, the names OTEL_EXPORTER_OTLP_PROTOCOL uses.</summary>
    public string Protocol { get; set; } = "grpc";

    /// <summary>How often the points are pushed.</summary>
    public int ExportIntervalMs { get; set; } = 10_000;

    public bool Enabled => !string.IsNullOrWhiteSpace(Endpoint);

    public Uri EndpointUri => new(Endpoint!, UriKind.Absolute);

    public IEnumerable<string> Validate()
    {
        if (Enabled && (!Uri.TryCreate(Endpoint, UriKind.Absolute, out var uri) || (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps)))
        {
            yield return OptionErrors.Invalid(Section, nameof(Endpoint), Endpoint, "an http:// or https:// address, or empty for no push");
        }

        if (Protocol is not ("grpc" or "http/protobuf"))
        {
            yield return OptionErrors.Invalid(Section, nameof(Protocol), Protocol, "grpc or http/protobuf");
        }

        foreach (var error in OptionErrors.Range(Section, nameof(ExportIntervalMs), ExportIntervalMs, 1000, 3_600_000))
        {
            yield return error;
        }
    }
}
