using TcpConnections;
using GameServer.Cluster;
using GameServer.Game;
using GameServer.Options;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Console;
using Microsoft.Extensions.Options;
using OpenTelemetry.Exporter;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;

namespace GameServer.Hosting;

/// <summary>Builds the server's host. Program and the in-process tests both start the server through here.</summary>
public static class GameServerApp
{
    /// <summary>
    /// Configuration, in order of precedence from low to high: appsettings.json (next to the binary),
    /// config/appsettings.{Environment}.json, environment variables (<c>GAMESERVER_Server__Port</c> or the plain
    /// <c>Server__Port</c>), then the command line (<c>--Server:Port=7001</c>).
    /// </summary>
    public static HostApplicationBuilder CreateBuilder(string[] args)
    {
        DotNettyLogBridge.Install();
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings
        {
            Args = args,
            ContentRootPath = AppContext.BaseDirectory,
            EnvironmentName = Environment.GetEnvironmentVariable("DOTNET_ENVIRONMENT")
                ?? Environment.GetEnvironmentVariable("GAMESERVER_ENVIRONMENT")
                ?? Environments.Production,
        });

        var environment = builder.Environment.EnvironmentName;
        builder.Configuration
            .AddJsonFile(Path.Combine(AppContext.BaseDirectory, "appsettings.json"), optional: true, reloadOnChange: false)
            .AddJsonFile(Path.Combine(AppContext.BaseDirectory, "config", $"appsettings.{environment}.json"), optional: true, reloadOnChange: false)
            .AddEnvironmentVariables()
            .AddEnvironmentVariables("GAMESERVER_")
            .AddCommandLine(args);

        builder.Logging.AddConfiguration(builder.Configuration.GetSection(LogFormatOptions.Section));
        builder.Logging.AddConsole();
        builder.Services.Configure<SimpleConsoleFormatterOptions>(o =>
        {
            o.IncludeScopes = true;
            o.SingleLine = true;
            o.TimestampFormat = "HH:mm:ss.fff ";
        });
        builder.Services.Configure<JsonConsoleFormatterOptions>(o =>
        {
            o.IncludeScopes = true;
            o.UseUtcTimestamp = true;
            o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ";
        });

        // The Logging section also holds the logging framework's own keys (LogLevel, Console), so unknown keys are not
        // errors here; Format itself is validated on start like every other option.
        builder.Services.AddOptions<LogFormatOptions>().Bind(builder.Configuration.GetSection(LogFormatOptions.Section)).ValidateOnStart();
        builder.Services.AddSingleton<IValidateOptions<LogFormatOptions>, ValidatedOptionsValidator<LogFormatOptions>>();
        builder.Services.AddOptions<ConsoleLoggerOptions>().Configure<IOptions<LogFormatOptions>>((console, format) =>
            console.FormatterName = format.Value.Format == "json" ? ConsoleFormatterNames.Json : ConsoleFormatterNames.Simple);

        builder.Services.AddSingleton(TimeProvider.System);
        builder.Services.AddMetrics();
        AddOptions<ServerOptions>(builder, ServerOptions.Section);
        AddOptions<GameOptions>(builder, GameOptions.Section);
        AddOptions<MetricsOptions>(builder, MetricsOptions.Section);
        AddOptions<ConnectionOptions>(builder, ConnectionOptions.Section);
        AddOptions<HeartbeatOptions>(builder, HeartbeatOptions.Section);
        AddOptions<TcpTimeoutOptions>(builder, TcpTimeoutOptions.Section);
        AddOptions<LimitsOptions>(builder, LimitsOptions.Section);
        AddOptions<SessionOptions>(builder, SessionOptions.Section);

        AddOptions<ClusterModeOptions>(builder, ClusterModeOptions.Section);

        builder.Services.AddSingleton<GameServerMetrics>();
        builder.Services.AddSingleton<ConnectionRegistry>();
        builder.Services.AddSingleton<GameServices>();
        builder.Services.AddSingleton<RoomManager>();
        builder.Services.AddSingleton<SessionStore>();
        builder.Services.AddSingleton<GameServerHost>();
        builder.Services.AddSingleton<OpsEndpoint>();
        AddTelemetry(builder);

        // Hosted services stop in reverse order: the room ticker stops first (nothing is queued to loops that are
        // about to end), then the server says Goodbye to everyone and stops its loops, then the metrics and probes
        // listener goes (so /readyz answers "shutting down" for the whole drain).
        builder.Services.AddHostedService(sp => sp.GetRequiredService<OpsEndpoint>());

        // Which part of the game this process is decides what runs in it, so it is read here, before the host is
        // built; the same section is validated on start like every other (a bad value stops the process there).
        var cluster = builder.Configuration.GetSection(ClusterModeOptions.Section).Get<ClusterModeOptions>() ?? new ClusterModeOptions();
        if (cluster.IsSilo)
        {
            ClusterHosting.AddSilo(builder, cluster);
        }
        else if (cluster.IsGateway)
        {
            // The Orleans client starts before the game port opens and stops after the last Goodbye; the gateway's
            // own stop, between the two, waits for the connections' last calls to their sessions.
            ClusterHosting.AddGateway(builder, cluster);
            builder.Services.AddSingleton<IReadiness>(sp => sp.GetRequiredService<GameServerHost>());
            builder.Services.AddHostedService(sp => sp.GetRequiredService<GameServerHost>());
        }
        else
        {
            builder.Services.AddSingleton<ISessionHandlerFactory, SessionHandlerFactory>();
            builder.Services.AddSingleton<IReadiness>(sp => sp.GetRequiredService<GameServerHost>());
            builder.Services.AddHostedService(sp => sp.GetRequiredService<GameServerHost>());
            builder.Services.AddHostedService(sp => sp.GetRequiredService<RoomManager>());
        }

        // The host never cuts the Goodbye drain short: it allows the drain, the aborts after it and the loops' stop.
        builder.Services.AddOptions<HostOptions>().Configure<IOptions<ServerOptions>>((host, server) =>
            host.ShutdownTimeout = TimeSpan.FromMilliseconds(server.Value.ShutdownTimeoutMs) + ShutdownAfterDrain);
        return builder;
    }

    /// <summary>
    /// Metrics through the OpenTelemetry host integration: the game's meter and the runtime's own
    /// (<c>System.Runtime</c>: GC, thread pool, exceptions), under the configured <c>service.name</c>; read by
    /// <see cref="OpsEndpoint"/>'s Prometheus endpoint and, when <c>Metrics:Otlp:Endpoint</c> is set, pushed over OTLP.
    /// </summary>
    private static void AddTelemetry(HostApplicationBuilder builder)
    {
        builder.Services.AddOpenTelemetry()
            .ConfigureResource(r => r.AddDetector(sp => new ServiceResource(sp.GetRequiredService<IOptions<MetricsOptions>>().Value.ServiceName)))
            .WithMetrics(metrics =>
            {
                metrics.AddMeter(GameServerMetrics.MeterName, RuntimeMeterName).AddPrometheusExporter();

                // Whether there is a push at all is configuration, read where the options are, once they are bound.
                ((IDeferredMeterProviderBuilder)metrics).Configure((sp, deferred) =>
                {
                    var otlp = sp.GetRequiredService<IOptions<MetricsOptions>>().Value.Otlp;
                    if (!otlp.Enabled)
                    {
                        return;
                    }

                    var exporter = new OtlpMetricExporter(new OtlpExporterOptions
                    {
                        Endpoint = otlp.EndpointUri,
                        Protocol = otlp.Protocol == "grpc" ? OtlpExportProtocol.Grpc : OtlpExportProtocol.HttpProtobuf,
                    });
                    deferred.AddReader(new PeriodicExportingMetricReader(exporter, otlp.ExportIntervalMs));
                });
            });
    }

    /// <summary>
    /// What a stop takes beyond <c>Server:ShutdownTimeoutMs</c>: aborting the connections left (up to 5 s) and stopping
    /// the event loops (2 s and a grace). A supervisor (systemd's TimeoutStopSec, Kubernetes' grace period) must allow
    /// more than the two together before it kills the process.
    /// </summary>
    public static readonly TimeSpan ShutdownAfterDrain = TimeSpan.FromSeconds(15);

    /// <summary>The runtime's built-in meter (.NET 9 and later).</summary>
    public const string RuntimeMeterName = "System.Runtime";

    private sealed class ServiceResource(string name) : IResourceDetector
    {
        public Resource Detect() => new(new Dictionary<string, object>
        {
            ["service.name"] = name,
            ["service.version"] = typeof(GameServerApp).Assembly.GetName().Version?.ToString() ?? "0.0.0",
        });
    }

    /// <summary>
    /// Every options class, the game's and the connection library's, is bound and validated on start this one way. A
    /// key its class does not have is an error too: a misspelt or moved key would otherwise be ignored in silence.
    /// </summary>
    private static void AddOptions<T>(HostApplicationBuilder builder, string section)
        where T : class, IValidatedOptions
    {
        builder.Services.AddOptions<T>()
            .Bind(builder.Configuration.GetSection(section), o => o.ErrorOnUnknownConfiguration = true)
            .ValidateOnStart();
        builder.Services.AddSingleton<IValidateOptions<T>, ValidatedOptionsValidator<T>>();
    }
}
