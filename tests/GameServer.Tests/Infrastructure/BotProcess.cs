using System.Diagnostics;
using System.Text;

namespace GameServer.Tests.Infrastructure;

/// <summary>The GameClient bot as a child process, for the cases where the client's process must exit or die.</summary>
public sealed class BotProcess : IDisposable
{
    private readonly Process process;
    private readonly StringBuilder output = new();
    private readonly TaskCompletionSource ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource exited = new(TaskCreationOptions.RunContinuationsAsynchronously);

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

    public static BotProcess Start(params string[] args)
    {
        var info = new ProcessStartInfo(DotnetHost())
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        info.ArgumentList.Add(BotPath());
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
        }

        if (line == "ready")
        {
            ready.TrySetResult();
        }
    }

    private static string DotnetHost() =>
        Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host && File.Exists(host) ? host : "dotnet";

    private static string BotPath()
    {
        // tests/GameServer.Tests/bin/<Configuration>/net10.0/ → GameClient/Bot/bin/<Configuration>/net10.0/
        var here = new DirectoryInfo(AppContext.BaseDirectory);
        var configuration = here.Parent!.Name;
        var root = here;
        while (root is not null && !File.Exists(Path.Combine(root.FullName, "GameServer.sln")))
        {
            root = root.Parent;
        }

        if (root is null)
        {
            throw new InvalidOperationException($"cannot find the repository root above {AppContext.BaseDirectory}");
        }

        var path = Path.Combine(root.FullName, "GameClient", "Bot", "bin", configuration, "net10.0", "GameClient.Bot.dll");
        return File.Exists(path) ? path : throw new FileNotFoundException("the bot is not built", path);
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int Kill(int pid, int signal);
}
