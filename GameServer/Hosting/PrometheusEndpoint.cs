using GameServer.Options;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using OpenTelemetry;
using OpenTelemetry.Metrics;

namespace GameServer.Hosting;

/// <summary>
/// Serves the <c>GameServer</c> meter in Prometheus text format on <c>http://127.0.0.1:{Metrics:Port}/metrics</c>.
/// Loopback only: metrics are for the operator's scraper on the same host, never for the players' network.
/// </summary>
public sealed class PrometheusEndpoint : IHostedService, IDisposable
{
    private readonly MetricsOptions options;
    private readonly ILogger<PrometheusEndpoint> logger;
    private MeterProvider? provider;

    public PrometheusEndpoint(IOptions<MetricsOptions> options, ILogger<PrometheusEndpoint> logger)
    {
        this.options = options.Value;
        this.logger = logger;
    }

    /// <summary>The scrape address, or null when the endpoint is off.</summary>
    public Uri? Address { get; private set; }

    public Task StartAsync(CancellationToken cancellationToken)
    {
        if (options.Port == 0)
        {
            Log.MetricsDisabled(logger);
            return Task.CompletedTask;
        }

        var prefix = $"http://127.0.0.1:{options.Port}/";
        provider = Sdk.CreateMeterProviderBuilder()
            .AddMeter(GameServerMetrics.MeterName)
            .AddPrometheusHttpListener(o =>
            {
                o.Host = "127.0.0.1";
                o.Port = options.Port;
                o.ScrapeEndpointPath = "/metrics";
            })
            .Build();
        Address = new Uri(prefix + "metrics");
        Log.MetricsListening(logger, Address);
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        Dispose();
        return Task.CompletedTask;
    }

    public void Dispose()
    {
        provider?.Dispose();
        provider = null;
    }
}
