using TcpConnections;

namespace GameServer.Options;

/// <summary>The Prometheus endpoint. Section <c>Metrics</c>.</summary>
public sealed class MetricsOptions : IValidatedOptions
{
    public const string Section = "Metrics";

    /// <summary>Port of <c>http://127.0.0.1:{Port}/metrics</c>; 0 turns the endpoint off.</summary>
    public int Port { get; set; } = 9464;

    public IEnumerable<string> Validate() => OptionErrors.Range(Section, nameof(Port), Port, 0, 65535);
}
