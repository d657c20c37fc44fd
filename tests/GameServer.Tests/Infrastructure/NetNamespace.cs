using System.Diagnostics;

namespace GameServer.Tests.Infrastructure;

/// <summary>
/// A private network namespace with only its own loopback, made and removed by the test (needs root and iproute2;
/// ./run.sh test installs iproute2 and iptables). Traffic in it never leaves it.
/// </summary>
public sealed class NetNamespace : IDisposable
{
    private static int counter;

    private NetNamespace(string name) => Name = name;

    public string Name { get; }

    public static NetNamespace Create()
    {
        if (!RootFactAttribute.IsRoot)
        {
            throw new InvalidOperationException("this case needs root to make a network namespace; run ./run.sh test as root");
        }

        foreach (var tool in new[] { "ip", "iptables" })
        {
            if (Run("sh", "-c", $"command -v {tool}").ExitCode != 0)
            {
                throw new InvalidOperationException($"this case needs '{tool}' (Debian: iproute2, iptables); ./run.sh test installs them");
            }
        }

        var name = $"gs{Environment.ProcessId}x{Interlocked.Increment(ref counter)}";
        Check(Run("ip", "netns", "add", name), "ip netns add");
        var ns = new NetNamespace(name);
        Check(Run("ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"), "ip link set lo up");
        return ns;
    }

    /// <summary>Drops every packet to or from a local TCP port in both directions: a pulled cable for that connection.</summary>
    public void PullCable(int port)
    {
        Check(Run("ip", "netns", "exec", Name, "iptables", "-I", "INPUT", "-p", "tcp", "--sport", port.ToString(), "-j", "DROP"), "iptables --sport");
        Check(Run("ip", "netns", "exec", Name, "iptables", "-I", "INPUT", "-p", "tcp", "--dport", port.ToString(), "-j", "DROP"), "iptables --dport");
    }

    public void Dispose() => Run("ip", "netns", "del", Name);

    private static void Check((int ExitCode, string Output) result, string what)
    {
        if (result.ExitCode != 0)
        {
            throw new InvalidOperationException($"{what} failed ({result.ExitCode}): {result.Output}");
        }
    }

    private static (int ExitCode, string Output) Run(string file, params string[] args)
    {
        var info = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        using var process = Process.Start(info)!;
        var text = process.StandardOutput.ReadToEnd() + process.StandardError.ReadToEnd();
        process.WaitForExit();
        return (process.ExitCode, text);
    }
}
