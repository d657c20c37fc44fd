using System.Net;
using System.Net.Sockets;
using TcpConnections;
using GameServer.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace GameServer.Tests.Infrastructure;

/// <summary>The real server host, in process, on an ephemeral port, with its log captured for assertions.</summary>
public sealed class TestServer : IAsyncDisposable
{
    private readonly IHost host;
    private bool stopped;

    private TestServer(IHost host, IPEndPoint endPoint, CapturingLoggerProvider logs)
    {
        this.host = host;
        EndPoint = endPoint;
        Logs = logs;
    }

    public IPEndPoint EndPoint { get; }

    public CapturingLoggerProvider Logs { get; }

    public ConnectionRegistry Registry => host.Services.GetRequiredService<ConnectionRegistry>();

    public ConnectionMetrics Metrics => host.Services.GetRequiredService<GameServerMetrics>().Connections;

    public IServiceProvider Services => host.Services;

    /// <summary>
    /// The transport every test server uses unless a test picks one: GAMESERVER_TEST_TRANSPORT (run.sh test runs the
    /// suite once per transport), else the server's default.
    /// </summary>
    public static string DefaultTransport { get; } = Environment.GetEnvironmentVariable("GAMESERVER_TEST_TRANSPORT") is { Length: > 0 } transport
        ? transport
        : "sockets";

    public static Task<TestServer> StartAsync(params string[] settings) => StartAsync(time: null, settings);

    /// <summary>As above, on <paramref name="time"/> (a fake clock drives the server's timers) when given.</summary>
    public static async Task<TestServer> StartAsync(TimeProvider? time, params string[] settings)
    {
        var args = new List<string>
        {
            "--Server:Port=0", "--Metrics:Port=0", "--Connection:DrainTimeoutMs=3000", "--Logging:LogLevel:Default=Debug",
            $"--Server:Transport={DefaultTransport}",

            // DotNetty's own default, not the server's: a leaked buffer it happens to sample and collect during a case is
            // logged as an error, which the cases' no-error assertions catch. LeakTests makes sure of it.
            "--Server:LeakDetection=simple",
        };
        args.AddRange(settings);
        var builder = GameServerApp.CreateBuilder([.. args]);
        var logs = new CapturingLoggerProvider();
        builder.Logging.ClearProviders();
        builder.Logging.AddProvider(logs);
        builder.Logging.SetMinimumLevel(LogLevel.Debug);
        if (time is not null)
        {
            builder.Services.AddSingleton(time);
        }

        var host = builder.Build();
        await host.StartAsync();
        var endPoint = await host.Services.GetRequiredService<GameServerHost>().Listening;
        return new TestServer(host, endPoint, logs);
    }

    public GameClient.GameClientOptions ClientOptions(string name = "tester") => new()
    {
        Host = EndPoint.Address.ToString(),
        Port = EndPoint.Port,
        PlayerName = name,
        Transport = DefaultTransport, // the client side of the cases runs on the same transport as the server
    };

    /// <summary>Waits for the server side of the connection whose client end is <paramref name="clientLocal"/>.</summary>
    public async Task<TcpConnection> ServerSideOfAsync(EndPoint? clientLocal)
    {
        for (var i = 0; i < 500; i++)
        {
            if (Registry.FindByRemote(clientLocal) is { } state)
            {
                return state;
            }

            await Task.Delay(10);
        }

        throw new TimeoutException($"no server connection from {clientLocal}");
    }

    /// <summary>Waits for a log line of the server's (polling its captured log).</summary>
    public async Task<CapturingLoggerProvider.LogEntry> WaitForLogAsync(Func<CapturingLoggerProvider.LogEntry, bool> match, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(20));
        while (DateTime.UtcNow < deadline)
        {
            if (Logs.Entries.FirstOrDefault(match) is { } entry)
            {
                return entry;
            }

            await Task.Delay(10);
        }

        throw new TimeoutException("the server did not log the line awaited");
    }

    /// <summary>Waits until every connection has closed, so each test can prove it leaked none.</summary>
    public async Task AssertAllClosedAsync(TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(20));
        while ((Metrics.ActiveCount != 0 || Registry.Count != 0) && DateTime.UtcNow < deadline)
        {
            await Task.Delay(20);
        }

        Assert.Equal(0, Metrics.ActiveCount);
        Assert.Equal(0, Registry.Count);
    }

    public async Task StopAsync()
    {
        if (!stopped)
        {
            stopped = true;
            await host.StopAsync();
        }
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        host.Dispose();
    }

    /// <summary>A port that was free a moment ago (for the metrics listener, which cannot bind port 0).</summary>
    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
