using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Package.Tests;

/// <summary>The sample running in its own process, and the close lines it prints.</summary>
public sealed class SampleServer : IAsyncDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);
    private readonly Process process;
    private readonly ConcurrentQueue<string> lines = new();
    private readonly SemaphoreSlim arrived = new(0);
    private readonly StringBuilder errors = new();

    private SampleServer(Process process)
    {
        this.process = process;
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                lines.Enqueue(e.Data);
                arrived.Release();
            }
        };
        process.ErrorDataReceived += (_, e) =>
        {
            lock (errors)
            {
                errors.AppendLine(e.Data);
            }
        };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
    }

    public int Port { get; private set; }

    public static async Task<SampleServer> StartAsync(string dll, string transport)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var argument in new[] { dll, "--port", "0", "--transport", transport, "--heartbeat-ms", "300", "--misses", "6" })
        {
            start.ArgumentList.Add(argument);
        }

        var server = new SampleServer(Process.Start(start)!);
        var listening = await server.WaitForLineAsync(l => l.StartsWith("listening ", StringComparison.Ordinal));
        var words = listening.Split(' ');
        Assert.Equal(transport, words[2]);
        server.Port = int.Parse(words[1]);
        return server;
    }

    public async Task<LineClient> ConnectAsync()
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, Port));
        return new LineClient(socket);
    }

    /// <summary>What the server printed when the connection from <paramref name="client"/> closed, without the address.</summary>
    public async Task<string> CloseOfAsync(LineClient client)
    {
        var suffix = $" remote={client.LocalEndPoint}";
        var line = await WaitForLineAsync(l => l.StartsWith("closed ", StringComparison.Ordinal) && l.EndsWith(suffix, StringComparison.Ordinal));
        return line[..^suffix.Length];
    }

    public async ValueTask DisposeAsync()
    {
        if (!process.HasExited)
        {
            process.Kill();
            await process.WaitForExitAsync();
        }

        process.Dispose();
    }

    private readonly List<string> seen = [];

    private async Task<string> WaitForLineAsync(Func<string, bool> wanted)
    {
        var deadline = DateTime.UtcNow + Timeout;
        while (true)
        {
            var found = seen.FirstOrDefault(wanted);
            if (found is not null)
            {
                seen.Remove(found);
                return found;
            }

            var left = deadline - DateTime.UtcNow;
            if (left <= TimeSpan.Zero || process.HasExited && lines.IsEmpty)
            {
                string stderr;
                lock (errors)
                {
                    stderr = errors.ToString();
                }

                throw new TimeoutException($"the sample printed no such line; it printed: {string.Join(" | ", seen)}; stderr: {stderr}");
            }

            if (await arrived.WaitAsync(left) && lines.TryDequeue(out var line))
            {
                seen.Add(line);
            }
        }
    }
}

/// <summary>A raw socket speaking lines, as any client of the sample would.</summary>
public sealed class LineClient(Socket socket) : IDisposable
{
    private readonly byte[] buffer = new byte[4096];
    private readonly StringBuilder pending = new();

    public Socket Socket { get; } = socket;

    public string LocalEndPoint { get; } = socket.LocalEndPoint!.ToString()!;

    public Task SendLineAsync(string line) => Socket.SendAsync(Encoding.ASCII.GetBytes(line + "\n"));

    /// <summary>The next line that is not a heartbeat Ping (Pings are answered, as a live client does).</summary>
    public async Task<string> ReadLineAsync()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        while (true)
        {
            var text = pending.ToString();
            var end = text.IndexOf('\n', StringComparison.Ordinal);
            if (end >= 0)
            {
                pending.Remove(0, end + 1);
                var line = text[..end];
                if (line.StartsWith("ping ", StringComparison.Ordinal))
                {
                    await SendLineAsync("pong " + line[5..]);
                    continue;
                }

                return line;
            }

            var read = await Socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token);
            if (read == 0)
            {
                throw new EndOfStreamException("the server closed before a whole line");
            }

            pending.Append(Encoding.ASCII.GetString(buffer, 0, read));
        }
    }

    /// <summary>Reads and drops everything up to the server's FIN.</summary>
    public async Task ReadToEndAsync()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        while (await Socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token) > 0)
        {
        }
    }

    public void Dispose() => Socket.Dispose();
}
