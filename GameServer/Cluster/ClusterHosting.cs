using System.Net;
using GameServer.Hosting;
using GameServer.Options;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orleans.Configuration;
using StackExchange.Redis;

namespace GameServer.Cluster;

/// <summary>How a process joins the cluster: as a silo (grains) or as a gateway (players), both through Redis.</summary>
public static class ClusterHosting
{
    /// <summary>How often a gateway rereads the silo list: a silo that comes back is used again within this.</summary>
    private static readonly TimeSpan GatewayListRefresh = TimeSpan.FromSeconds(5);

    public static void AddSilo(HostApplicationBuilder builder, ClusterModeOptions cluster)
    {
        builder.UseOrleans(silo => silo
            .UseRedisClustering(o => o.ConfigurationOptions = Redis(cluster))
            .Configure<ClusterOptions>(o => SameCluster(o, cluster))
            .ConfigureEndpoints(IPAddress.Parse(cluster.AdvertisedAddress), cluster.SiloPort, cluster.ClientPort)
            .Configure<SiloMessagingOptions>(o => o.ResponseTimeout = TimeSpan.FromMilliseconds(cluster.ResponseTimeoutMs))
            .Configure<ClusterMembershipOptions>(o =>
            {
                o.ProbeTimeout = TimeSpan.FromMilliseconds(cluster.ProbeTimeoutMs);
                o.NumMissedProbesLimit = cluster.MissedProbesLimit;
            })
            .AddRedisGrainStorage(ClusterNames.Storage, o =>
            {
                o.ConfigurationOptions = Redis(cluster);
                o.DeleteStateOnClear = true; // a forgotten session or an empty room leaves no key behind
            }));
        builder.Services.AddSingleton<SiloReadiness>();
        builder.Services.AddSingleton<IReadiness>(sp => sp.GetRequiredService<SiloReadiness>());
    }

    public static void AddGateway(HostApplicationBuilder builder, ClusterModeOptions cluster)
    {
        builder.UseOrleansClient(client => client
            .UseRedisClustering(o => o.ConfigurationOptions = Redis(cluster))
            .Configure<ClusterOptions>(o => SameCluster(o, cluster))
            .Configure<GatewayOptions>(o => o.GatewayListRefreshPeriod = GatewayListRefresh)
            .Configure<ClientMessagingOptions>(o => o.ResponseTimeout = TimeSpan.FromMilliseconds(cluster.ResponseTimeoutMs))
            .UseConnectionRetryFilter<ConnectRetryFilter>());
        builder.Services.AddSingleton<Gateway>();
        builder.Services.AddSingleton<IClusterConnectionStatusObserver, GatewayConnectionWatch>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<Gateway>());
        builder.Services.AddSingleton<ISessionHandlerFactory, ClusterSessionHandlerFactory>();
    }

    /// <summary>Silos and gateways with the same ids form one cluster and share its grain state.</summary>
    private static void SameCluster(ClusterOptions options, ClusterModeOptions cluster)
    {
        options.ClusterId = cluster.ClusterId;
        options.ServiceId = cluster.ServiceId;
    }

    private static ConfigurationOptions Redis(ClusterModeOptions cluster)
    {
        var options = ConfigurationOptions.Parse(cluster.Redis);
        options.AbortOnConnectFail = false; // Redis may start after us, or restart: keep trying rather than fail the process
        return options;
    }
}

/// <summary>
/// Tells the gateway when its client has lost every connection to the cluster. The gateway is found when that
/// happens, not injected: it needs the client, and the client is built with its status observers.
/// </summary>
public sealed class GatewayConnectionWatch(IServiceProvider services) : IClusterConnectionStatusObserver
{
    public void NotifyClusterConnectionLost() => services.GetRequiredService<Gateway>().OnClusterConnectionLost();

    public void NotifyGatewayCountChanged(int currentNumberOfGateways, int previousNumberOfGateways, bool connectionRecovered)
    {
        // Losing one of several connections loses nothing: a silo reaches this gateway through any it still holds.
    }
}

/// <summary>A gateway started before its silos (or while they restart) waits for them instead of exiting.</summary>
public sealed class ConnectRetryFilter(ILogger<Gateway> logger) : IClientConnectionRetryFilter
{
    private static readonly TimeSpan Delay = TimeSpan.FromSeconds(1);
    private int attempts;

    public async Task<bool> ShouldRetryConnectionAttempt(Exception exception, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(exception);
        Log.ClusterConnectRetry(logger, ++attempts, exception.Message);
        await Task.Delay(Delay, cancellationToken);
        return true;
    }
}

/// <summary>A silo is ready from the host's start (the silo has joined the cluster by then) until it begins to stop.</summary>
public sealed class SiloReadiness : IReadiness
{
    private volatile bool started;
    private volatile bool stopping;

    public SiloReadiness(IHostApplicationLifetime lifetime, Microsoft.Extensions.Options.IOptions<ClusterModeOptions> cluster, ILogger<SiloReadiness> logger)
    {
        ArgumentNullException.ThrowIfNull(lifetime);
        var options = cluster.Value;
        var role = $"silo {options.AdvertisedAddress}:{options.SiloPort} (gateways connect to port {options.ClientPort})";
        lifetime.ApplicationStarted.Register(() =>
        {
            started = true;
            Log.ClusterRole(logger, role, options.ClusterId, options.Redis);
        });
        lifetime.ApplicationStopping.Register(() => stopping = true);
    }

    public (bool Ready, string Reason) Readiness() =>
        stopping ? (false, "shutting down") : started ? (true, "silo ready") : (false, "silo starting");
}
