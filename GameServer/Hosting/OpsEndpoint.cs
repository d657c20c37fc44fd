using System.Net;
using GameServer.Options;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using OpenTelemetry.Metrics;

namespace GameServer.Hosting;

/// <summary>
/// The operator's HTTP listener on <c>Metrics:Address</c>:<c>Metrics:Port</c>: <c>/metrics</c> (Prometheus text),
/// <c>/healthz</c> (the process answers) and <c>/readyz</c> (<see cref="IReadiness.Readiness"/>: 200 when new
/// players should come here, 503 with the reason otherwise). A small Kestrel of its own, so probes and scrapes never
/// touch the game's event loops, and a TCP probe of the game port is never needed (it would count as a connection
/// that closed before Hello).
/// </summary>
public sealed class OpsEndpoint : IHostedService, IAsyncDisposable
{
    public const string MetricsPath = "/metrics";
    public const string HealthPath = "/healthz";
    public const string ReadyPath = "/readyz";

    private readonly MetricsOptions options;
    private readonly MeterProvider meterProvider;
    private readonly IReadiness server;
    private readonly ILoggerFactory loggerFactory;
    private readonly ILogger<OpsEndpoint> logger;
    private WebApplication? app;

    public OpsEndpoint(IOptions<MetricsOptions> options, MeterProvider meterProvider, IReadiness server, ILoggerFactory loggerFactory)
    {
        this.options = options.Value;
        this.meterProvider = meterProvider;
        this.server = server;
        this.loggerFactory = loggerFactory;
        logger = loggerFactory.CreateLogger<OpsEndpoint>();
    }

    /// <summary>The listener's base address (<c>http://127.0.0.1:9464/</c>), or null when it is off.</summary>
    public Uri? Address { get; private set; }

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        if (options.Otlp.Enabled)
        {
            Log.OtlpExporting(logger, options.Otlp.Protocol, options.Otlp.EndpointUri, options.Otlp.ExportIntervalMs);
        }

        if (options.Port == 0)
        {
            Log.MetricsDisabled(logger);
            return;
        }

        // An empty builder: no configuration sources, URLs or environment of its own (ASPNETCORE_URLS would otherwise
        // move it), and its log lines go through the server's logging.
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions());
        builder.Logging.ClearProviders();
        builder.Logging.AddProvider(new ForwardingLoggerProvider(loggerFactory));

        // Event 2010 says where it listens; the web host's own "Now listening on" and "Application started" lines
        // would say it again, as if a second application had started.
        builder.Logging.AddFilter("Microsoft.Hosting.Lifetime", LogLevel.None);

        // The server's host owns SIGTERM and Ctrl+C. With its own console lifetime this listener would stop on the
        // signal by itself, and /readyz would vanish during the Goodbye drain instead of answering "shutting down".
        builder.Services.AddSingleton<IHostLifetime, OwnedLifetime>();
        builder.WebHost.UseKestrelCore().ConfigureKestrel(k =>
        {
            k.AddServerHeader = false;
            k.Listen(options.ListenAddress, options.Port);
        });

        var web = builder.Build();
        web.UseOpenTelemetryPrometheusScrapingEndpoint(meterProvider, predicate: null, path: MetricsPath, configureBranchedPipeline: null, optionsName: null);
        web.Run(ServeProbeAsync);
        try
        {
            await web.StartAsync(cancellationToken);
        }
        catch
        {
            await web.DisposeAsync();
            throw;
        }

        app = web;
        var host = options.ListenAddress.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? $"[{options.Address}]" : options.Address;
        Address = new Uri($"http://{host}:{options.Port}/");
        Log.MetricsListening(logger, Address);
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (app is not null)
        {
            await app.StopAsync(cancellationToken);
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (app is not null)
        {
            await app.DisposeAsync();
            app = null;
        }
    }

    private Task ServeProbeAsync(HttpContext context)
    {
        var response = context.Response;
        response.ContentType = "text/plain; charset=utf-8";
        response.Headers.CacheControl = "no-store";
        var path = context.Request.Path;
        if (!path.Equals(HealthPath, StringComparison.Ordinal) && !path.Equals(ReadyPath, StringComparison.Ordinal))
        {
            response.StatusCode = StatusCodes.Status404NotFound;
            return response.WriteAsync($"not found; try {MetricsPath}, {HealthPath} or {ReadyPath}\n");
        }

        if (!HttpMethods.IsGet(context.Request.Method) && !HttpMethods.IsHead(context.Request.Method))
        {
            response.StatusCode = StatusCodes.Status405MethodNotAllowed;
            response.Headers.Allow = "GET, HEAD";
            return Task.CompletedTask;
        }

        // Alive means this process answers: a server that is shutting down or full is alive, only not ready.
        var (ok, reason) = path.Equals(HealthPath, StringComparison.Ordinal) ? (true, "alive") : server.Readiness();
        response.StatusCode = ok ? StatusCodes.Status200OK : StatusCodes.Status503ServiceUnavailable;
        return HttpMethods.IsHead(context.Request.Method) ? Task.CompletedTask : response.WriteAsync(reason + "\n");
    }

    /// <summary>The listener's log lines go where the server's go, under their own categories.</summary>
    private sealed class ForwardingLoggerProvider(ILoggerFactory target) : ILoggerProvider
    {
        public ILogger CreateLogger(string categoryName) => target.CreateLogger(categoryName);

        public void Dispose()
        {
            // The server's host owns the factory.
        }
    }

    private sealed class OwnedLifetime : IHostLifetime
    {
        public Task WaitForStartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }
}
