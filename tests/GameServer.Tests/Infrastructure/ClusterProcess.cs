using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;

namespace GameServer.Tests.Infrastructure;

/// <summary>
/// The cluster as <c>./run.sh cluster</c> starts it (<c>ops/cluster/cluster.sh</c>: Redis, two silos, two gateways,
/// HAProxy), on free loopback ports, for the failure cases: they kill its parts by the pid files it writes, and its
/// supervisor starts them again. Needs Debian's redis-server and haproxy (./run.sh test installs them).
/// </summary>
public sealed class ClusterProcess : IAsyncDisposable
{
    public const int Sigkill = 9;
    public const int Sigterm = 15;

    private static readonly string[] Parts = ["redis", "silo1", "silo2", "gateway1", "gateway2", "haproxy"];

    private readonly Process launcher;
    private readonly StringBuilder output = new();

    private ClusterProcess(Process launcher, int port, string folder)
    {
        this.launcher = launcher;
        Port = port;
        Folder = folder;
        launcher.ErrorDataReceived += (_, e) => Append(e.Data);
        launcher.OutputDataReceived += (_, e) => Append(e.Data);
        launcher.BeginErrorReadLine();
        launcher.BeginOutputReadLine();
    }

    /// <summary>HAProxy's port: where players connect.</summary>
    public int Port { get; }

    public IPEndPoint Front => new(IPAddress.Loopback, Port);

    /// <summary>Logs, pid files and Redis's data.</summary>
    public string Folder { get; }

    public string Output
    {
        get
        {
            lock (output)
            {
                return output.ToString();
            }
        }
    }

    public static async Task<ClusterProcess> StartAsync()
    {
        var port = FreeBasePort();
        var folder = Directory.CreateTempSubdirectory("cluster-").FullName;
        var start = new ProcessStartInfo("bash")
        {
            WorkingDirectory = Repo.Root,
            RedirectStandardError = true,
            RedirectStandardOutput = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (var arg in new[] { Repo.Path("ops", "cluster", "cluster.sh"), "--port", port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--dir", folder })
        {
            start.ArgumentList.Add(arg);
        }

        start.Environment["CONFIG"] = BotProcess.Configuration;
        var cluster = new ClusterProcess(Process.Start(start)!, port, folder);
        await cluster.WaitHealthyAsync(TimeSpan.FromSeconds(90));
        return cluster;
    }

    /// <summary>The pid of a part (redis, silo1, silo2, gateway1, gateway2, haproxy), as the launcher wrote it.</summary>
    public int Pid(string name) =>
        int.Parse(File.ReadAllText(Path.Combine(Folder, $"{name}.pid")).Trim(), System.Globalization.CultureInfo.InvariantCulture);

    public void Signal(string name, int signal)
    {
        if (Kill(Pid(name), signal) != 0)
        {
            throw new InvalidOperationException($"kill -{signal} {name} failed: errno {Marshal.GetLastPInvokeError()}");
        }
    }

    public string Log(string name)
    {
        using var stream = new FileStream(Path.Combine(Folder, $"{name}.log"), FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        return new StreamReader(stream).ReadToEnd();
    }

    /// <summary>A gateway's /readyz: its status and text ("ready (N of M connections)").</summary>
    public Task<(int Status, string Text)> ReadyzAsync(int gateway) => ReadyzAtAsync(Port + 19 + gateway);

    /// <summary>A silo's /readyz: 200 once it has joined the cluster.</summary>
    public Task<(int Status, string Text)> SiloReadyzAsync(int silo) => ReadyzAtAsync(Port + 49 + silo);

    private static async Task<(int Status, string Text)> ReadyzAtAsync(int port)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        try
        {
            using var response = await http.GetAsync(new Uri($"http://127.0.0.1:{port}/readyz"));
            return ((int)response.StatusCode, (await response.Content.ReadAsStringAsync()).Trim());
        }
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException)
        {
            return (0, ex.Message);
        }
    }

    /// <summary>Which gateway (1 or 2) holds exactly <paramref name="connections"/> connections while the other holds none.</summary>
    public async Task<int> GatewayWithAsync(int connections = 1)
    {
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            var one = await ReadyzAsync(1);
            var two = await ReadyzAsync(2);
            if (one.Text.Contains($"({connections} of", StringComparison.Ordinal) && two.Text.Contains("(0 of", StringComparison.Ordinal))
            {
                return 1;
            }

            if (two.Text.Contains($"({connections} of", StringComparison.Ordinal) && one.Text.Contains("(0 of", StringComparison.Ordinal))
            {
                return 2;
            }

            if (deadline.Elapsed > TimeSpan.FromSeconds(10))
            {
                throw new TimeoutException($"no gateway holds {connections} connections alone: gateway1 '{one.Text}', gateway2 '{two.Text}'");
            }

            await Task.Delay(50);
        }
    }

    /// <summary>HAProxy's view of each gateway (UP, DOWN, ...), from its runtime API.</summary>
    public async Task<Dictionary<string, string>> HaproxyStatusAsync() =>
        (await HaproxyStats.ReadAsync(Path.Combine(Folder, "haproxy.sock")))
            .Where(row => row["pxname"] == "gateways" && row["svname"].StartsWith("gateway", StringComparison.Ordinal))
            .ToDictionary(row => row["svname"], row => row["status"]);

    /// <summary>Every part running, both gateways ready, and HAProxy sending to both.</summary>
    public async Task WaitHealthyAsync(TimeSpan? timeout = null)
    {
        var limit = timeout ?? TimeSpan.FromSeconds(60);
        var since = Stopwatch.StartNew();
        var last = string.Empty;
        while (since.Elapsed < limit)
        {
            if (launcher.HasExited)
            {
                throw new InvalidOperationException($"the cluster launcher exited ({launcher.ExitCode}):\n{Output}");
            }

            try
            {
                var alive = Parts.All(n => Kill(Pid(n), 0) == 0);
                var one = await ReadyzAsync(1);
                var two = await ReadyzAsync(2);
                var silos = (await SiloReadyzAsync(1)).Status == 200 && (await SiloReadyzAsync(2)).Status == 200;
                var haproxy = await HaproxyStatusAsync();
                last = $"alive {alive}, silos ready {silos}, gateway1 '{one.Text}', gateway2 '{two.Text}', haproxy {string.Join(' ', haproxy.Select(p => $"{p.Key}={p.Value}"))}";
                if (alive && silos && one.Status == 200 && two.Status == 200 && haproxy.Count == 2 && haproxy.Values.All(s => s == "UP"))
                {
                    return;
                }
            }
            catch (Exception ex) when (ex is IOException or SocketException or FormatException)
            {
                last = ex.Message; // a pid file or the HAProxy socket between a part's restarts
            }

            await Task.Delay(200);
        }

        throw new TimeoutException($"the cluster was not healthy within {limit.TotalSeconds} s: {last}\n{Output}");
    }

    public async ValueTask DisposeAsync()
    {
        if (!launcher.HasExited)
        {
            _ = Kill(launcher.Id, Sigterm); // the launcher stops every part, front to back
            using var cancel = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            try
            {
                await launcher.WaitForExitAsync(cancel.Token);
            }
            catch (OperationCanceledException)
            {
                launcher.Kill(entireProcessTree: true);
            }
        }

        launcher.Dispose();
        try
        {
            Directory.Delete(Folder, recursive: true);
        }
        catch (IOException)
        {
            // A part still writing its log as it goes: the folder is in /tmp.
        }
    }

    private void Append(string? line)
    {
        if (line is not null)
        {
            lock (output)
            {
                output.AppendLine(line);
            }
        }
    }

    /// <summary>A base port whose whole block (HAProxy, gateways, silos, operator ports, Redis) is free now.</summary>
    private static int FreeBasePort()
    {
        int[] offsets = [0, 10, 11, 20, 21, 30, 31, 40, 41, 50, 51, 60, 70];
        for (var attempt = 0; attempt < 100; attempt++)
        {
            var port = Random.Shared.Next(20_000, 30_000);
            if (offsets.All(o => IsFree(port + o)))
            {
                return port;
            }
        }

        throw new InvalidOperationException("no free block of ports for the cluster");
    }

    private static bool IsFree(int port)
    {
        try
        {
            using var listener = new TcpListener(IPAddress.Loopback, port);
            listener.Start();
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    private static int Kill(int pid, int signal) => BotProcess.SendSignal(pid, signal);
}
