using System.Diagnostics;
using System.Text;

namespace GameServer.Tests.Infrastructure;

/// <summary>
/// A Debian tool a test runs beside the server (Prometheus, HAProxy): its output kept for failure messages, the
/// process killed at the end. A missing tool fails the case naming the package, which ./run.sh test installs.
/// </summary>
public sealed class ToolProcess : IDisposable
{
    private readonly Process process;
    private readonly StringBuilder log = new();

    private ToolProcess(Process process) => this.process = process;

    public bool HasExited => process.HasExited;

    public string Log
    {
        get
        {
            lock (log)
            {
                return log.ToString();
            }
        }
    }

    public static ToolProcess Start(string tool, string package, string workingDirectory, params string[] args)
    {
        var process = StartProcess(tool, package, workingDirectory, redirectInput: false, args);
        var started = new ToolProcess(process);
        process.OutputDataReceived += (_, e) => started.Append(e.Data);
        process.ErrorDataReceived += (_, e) => started.Append(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return started;
    }

    /// <summary>Starts <paramref name="tool"/> with its output redirected; a missing one fails naming its package.</summary>
    public static Process StartProcess(string tool, string package, string workingDirectory, bool redirectInput, params string[] args)
    {
        var info = new ProcessStartInfo(tool)
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardInput = redirectInput,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        try
        {
            return Process.Start(info)!;
        }
        catch (System.ComponentModel.Win32Exception ex)
        {
            throw new InvalidOperationException($"this case needs '{tool}' (Debian: {package}); ./run.sh test installs it", ex);
        }
    }

    public void Dispose()
    {
        if (!process.HasExited)
        {
            process.Kill(entireProcessTree: true);
            process.WaitForExit(10_000);
        }

        process.Dispose();
    }

    private void Append(string? line)
    {
        if (line is not null)
        {
            lock (log)
            {
                log.AppendLine(line);
            }
        }
    }
}
