using System.Diagnostics;
using System.Text;

namespace GameServer.Tests.Infrastructure;

/// <summary>
/// The GameClient bot (or the server) as a child process, for the cases where a process must exit, stop or die,
/// or run inside a network namespace.
/// </summary>
public sealed class BotProcess : IDisposable
{
    private readonly Process process;
    private readonly StringBuilder output = new();
    private readonly TaskCompletionSource ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource exited = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly List<(Func<string, bool> Match, TaskCompletionSource<string> Seen)> waiters = [];

    private BotProcess(Process process)
    {
        this.process = process;
        process.OutputDataReceived += (_, e) => OnLine(e.Data);
        process.ErrorDataReceived += (_, e) => OnLine(e.Data);
        process.Exited += (_, _) => exited.TrySetResult();
    }

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

    public int Pid => process.Id;

    /// <summary>Starts the bot on the transport of this test pass (<see cref="TestServer.DefaultTransport"/>), unless the arguments pick one.</summary>
    public static BotProcess Start(params string[] args) =>
        StartIn(null, BuiltDll("GameClient", "Bot", "GameClient.Bot.dll"), args.Contains("--transport") ? args : [.. args, "--transport", TestServer.DefaultTransport]);

    /// <summary>Starts a built .NET program, inside the network namespace <paramref name="netns"/> when given.</summary>
    public static BotProcess StartIn(string? netns, string dll, params string[] args)
    {
        var info = new ProcessStartInfo(netns is null ? DotnetHost() : "ip")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        if (netns is not null)
        {
            foreach (var arg in new[] { "netns", "exec", netns, DotnetHost() })
            {
                info.ArgumentList.Add(arg);
            }
        }

        info.ArgumentList.Add(dll);
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        var process = new Process { StartInfo = info, EnableRaisingEvents = true };
        var bot = new BotProcess(process);
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return bot;
    }

    /// <summary>Waits for the bot's <c>ready</c> line: everything before its close step is done.</summary>
    public Task WaitReadyAsync(TimeSpan? timeout = null) =>
        ready.Task.WaitAsync(timeout ?? TimeSpan.FromSeconds(60));

    public async Task<int> WaitExitAsync(TimeSpan? timeout = null)
    {
        await exited.Task.WaitAsync(timeout ?? TimeSpan.FromSeconds(60));
        process.WaitForExit(); // drains the redirected output
        return process.ExitCode;
    }

    /// <summary>Waits for the first output line (past or future) that matches.</summary>
    public Task<string> WaitForLineAsync(Func<string, bool> match, TimeSpan? timeout = null)
    {
        var seen = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (output)
        {
            var existing = output.ToString().Split('\n').Select(l => l.TrimEnd('\r')).FirstOrDefault(match);
            if (existing is not null)
            {
                seen.SetResult(existing);
            }
            else
            {
                waiters.Add((match, seen));
            }
        }

        return seen.Task.WaitAsync(timeout ?? TimeSpan.FromSeconds(60));
    }

    public void Signal(int signal) => _ = Kill(process.Id, signal);

    public void Dispose()
    {
        if (!process.HasExited)
        {
            process.Kill(entireProcessTree: true);
        }

        process.Dispose();
    }

    private void OnLine(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (output)
        {
            output.AppendLine(line);
            foreach (var waiter in waiters.Where(w => w.Match(line)).ToList())
            {
                waiter.Seen.TrySetResult(line);
                waiters.Remove(waiter);
            }
        }

        if (line == "ready")
        {
            ready.TrySetResult();
        }
    }

    private static string DotnetHost() =>
        Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host && File.Exists(host) ? host : "dotnet";

    /// <summary>A program built beside the tests, e.g. (<c>GameClient</c>, <c>Bot</c>, <c>GameClient.Bot.dll</c>).</summary>
    public static string BuiltDll(params string[] parts)
    {
        // tests/GameServer.Tests/bin/<Configuration>/net10.0/ → GameClient/Bot/bin/<Configuration>/net10.0/
        var folder = Repo.Path([.. parts[..^1], "bin", Configuration, "net10.0", parts[^1]]);
        return File.Exists(folder) ? folder : throw new FileNotFoundException("not built", folder);
    }

    /// <summary>The configuration these tests were built in (bin/&lt;Configuration&gt;/net10.0): the programs beside them are built the same way.</summary>
    public static string Configuration { get; } = new DirectoryInfo(AppContext.BaseDirectory).Parent!.Name;

    /// <summary>kill(2): sends <paramref name="signal"/> to <paramref name="pid"/> (0 only asks whether it lives); 0 on success.</summary>
    public static int SendSignal(int pid, int signal) => Kill(pid, signal);

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int Kill(int pid, int signal);
}
