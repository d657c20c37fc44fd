using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using System.Text;

namespace LoadTests.Scenarios;

/// <summary>
/// A cluster started by <c>./run.sh cluster</c>, found through the <c>cluster.env</c> its launcher writes into its run
/// folder: the players' port (HAProxy), each gateway's metrics, HAProxy's runtime API, and the pid file of each part.
/// </summary>
public sealed class ClusterTarget
{
    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(2) };

    private ClusterTarget(string folder, int port, IReadOnlyList<int> gatewayMetrics, IReadOnlyList<int> siloMetrics, int haproxyStats, IReadOnlyList<string> parts)
    {
        Folder = folder;
        Port = port;
        GatewayMetrics = [.. gatewayMetrics.Select(p => $"http://127.0.0.1:{p}/metrics")];
        SiloReadiness = [.. siloMetrics.Select(p => $"http://127.0.0.1:{p}/readyz")];
        HaproxyStats = haproxyStats;
        Parts = parts;
    }

    public string Folder { get; }

    /// <summary>HAProxy's port: where players connect.</summary>
    public int Port { get; }

    /// <summary>gateway1's and gateway2's Prometheus endpoints, in that order.</summary>
    public IReadOnlyList<string> GatewayMetrics { get; }

    /// <summary>Each silo's <c>/readyz</c>: 200 once it has joined the cluster.</summary>
    public IReadOnlyList<string> SiloReadiness { get; }

    public int HaproxyStats { get; }

    public IReadOnlyList<string> Parts { get; }

    public static string EnvFile(string folder) => Path.Combine(folder, "cluster.env");

    public static ClusterTarget Load(string folder)
    {
        var values = File.ReadAllLines(EnvFile(folder))
            .Where(l => l.Contains('=', StringComparison.Ordinal))
            .Select(l => l.Split('=', 2))
            .ToDictionary(p => p[0].Trim(), p => p[1].Trim(), StringComparer.Ordinal);
        string Value(string key) => values.TryGetValue(key, out var value)
            ? value
            : throw new ArgumentException($"{EnvFile(folder)} has no {key}: is it the run folder of ./run.sh cluster?");
        static int[] Ports(string list) => [.. list.Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(p => int.Parse(p, CultureInfo.InvariantCulture))];
        return new ClusterTarget(
            Path.GetFullPath(folder),
            int.Parse(Value("PORT"), CultureInfo.InvariantCulture),
            Ports(Value("GATEWAY_METRICS")),
            Ports(Value("SILO_METRICS")),
            int.Parse(Value("HAPROXY_STATS"), CultureInfo.InvariantCulture),
            Value("PARTS").Split(' ', StringSplitOptions.RemoveEmptyEntries));
    }

    /// <summary>The metrics endpoint of a gateway part (gateway1, gateway2), or null for another part.</summary>
    public string? MetricsOf(string part) =>
        part.StartsWith("gateway", StringComparison.Ordinal) && int.TryParse(part.AsSpan(7), out var n) && n >= 1 && n <= GatewayMetrics.Count
            ? GatewayMetrics[n - 1]
            : null;

    public int? Pid(string part)
    {
        try
        {
            return int.Parse(File.ReadAllText(Path.Combine(Folder, $"{part}.pid")).Trim(), CultureInfo.InvariantCulture);
        }
        catch (Exception ex) when (ex is IOException or FormatException)
        {
            return null; // between a part's death and its restart
        }
    }

    /// <summary>SIGKILL, as a crash or an OOM kill would: no Goodbye, no drain.</summary>
    public void Kill(string part)
    {
        var pid = Pid(part) ?? throw new InvalidOperationException($"{part} has no pid file in {Folder}: is the cluster running?");
        using var process = Process.GetProcessById(pid);
        process.Kill();
    }

    /// <summary>Every part has a live process, every silo has joined (its /readyz), and HAProxy sends players to both gateways.</summary>
    public async Task<bool> HealthyAsync()
    {
        foreach (var part in Parts)
        {
            if (!IsRunning(part))
            {
                return false;
            }
        }

        foreach (var readyz in SiloReadiness)
        {
            try
            {
                using var response = await Http.GetAsync(new Uri(readyz));
                if (!response.IsSuccessStatusCode)
                {
                    return false;
                }
            }
            catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException)
            {
                return false; // restarting
            }
        }

        try
        {
            using var client = new TcpClient();
            await client.ConnectAsync("127.0.0.1", HaproxyStats);
            var stream = client.GetStream();
            await stream.WriteAsync(Encoding.ASCII.GetBytes("show stat\n"));
            var text = await new StreamReader(stream, Encoding.ASCII).ReadToEndAsync();
            return text.Split('\n').Count(l => l.StartsWith("gateways,gateway", StringComparison.Ordinal) && l.Contains(",UP,", StringComparison.Ordinal)) == GatewayMetrics.Count;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    public async Task<TimeSpan> WaitHealthyAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        var since = Stopwatch.StartNew();
        while (!await HealthyAsync())
        {
            if (since.Elapsed > timeout)
            {
                throw new TimeoutException($"the cluster in {Folder} was not healthy again within {timeout.TotalSeconds} s");
            }

            await Task.Delay(100, cancellationToken);
        }

        return since.Elapsed;
    }

    /// <summary>Whether the process the part's pid file names is alive (false between a death and the restart).</summary>
    public bool IsRunning(string part) => Pid(part) is { } pid && Alive(pid);

    private static bool Alive(int pid)
    {
        try
        {
            using var process = Process.GetProcessById(pid);
            return !process.HasExited;
        }
        catch (ArgumentException)
        {
            return false;
        }
    }
}
