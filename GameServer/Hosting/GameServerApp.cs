using TcpConnections;
using GameServer.Game;
using GameServer.Options;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

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

        builder.Logging.AddConfiguration(builder.Configuration.GetSection("Logging"));
        builder.Logging.AddSimpleConsole(o =>
        {
            o.IncludeScopes = true;
            o.SingleLine = true;
            o.TimestampFormat = "HH:mm:ss.fff ";
        });

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

        builder.Services.AddSingleton<GameServerMetrics>();
        builder.Services.AddSingleton<ConnectionRegistry>();
        builder.Services.AddSingleton<GameServices>();
        builder.Services.AddSingleton<RoomManager>();
        builder.Services.AddSingleton<SessionStore>();
        builder.Services.AddSingleton<GameServerHost>();
        builder.Services.AddSingleton<PrometheusEndpoint>();

        // Hosted services stop in reverse order: the room ticker stops first (nothing is queued to loops that are
        // about to end), then the server says Goodbye to everyone and stops its loops, then metrics go.
        builder.Services.AddHostedService(sp => sp.GetRequiredService<PrometheusEndpoint>());
        builder.Services.AddHostedService(sp => sp.GetRequiredService<GameServerHost>());
        builder.Services.AddHostedService(sp => sp.GetRequiredService<RoomManager>());
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(60));
        return builder;
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
