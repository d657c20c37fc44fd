using System.Diagnostics;
using System.IO.Compression;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Xml.Linq;

namespace Package.Tests;

/// <summary>
/// The promise that the connection library stands alone, kept the way a user would meet it: `dotnet pack` the two
/// libraries into a folder feed, build samples/EchoServer (outside the solution) against those packages only, run it
/// on each transport and make it see an RST, a FIN, an EPIPE and a hung peer.
/// </summary>
public sealed class PackagedSampleTests : IClassFixture<PackagedSample>
{
    private static readonly TimeSpan CaseTimeout = TimeSpan.FromSeconds(20);
    private readonly PackagedSample sample;

    public PackagedSampleTests(PackagedSample sample) => this.sample = sample;

    [Fact]
    public void TheLibraryPackage_DependsOnDotNettyAndLoggingOnly_TargetsNet8AndNet10_AndCarriesReadmeLicenceAndSymbols()
    {
        var dependencies = sample.Dependencies("TcpConnections");
        Assert.NotEmpty(dependencies);
        Assert.All(dependencies, d => Assert.True(
            d.StartsWith("DotNetty.", StringComparison.Ordinal) || d == "Microsoft.Extensions.Logging.Abstractions",
            $"TcpConnections must depend on DotNetty and the logging abstractions only, not on {d}"));
        Assert.Contains("TcpConnections", sample.Dependencies("Transport.Epoll"));
        Assert.Equal(["lib/net10.0/TcpConnections.dll", "lib/net8.0/TcpConnections.dll"], sample.Libraries("TcpConnections"));
        foreach (var id in new[] { "TcpConnections", "Transport.Epoll" })
        {
            var nuspec = sample.Nuspec(id);
            Assert.Equal("MIT", nuspec.Descendants().Single(e => e.Name.LocalName == "license").Value);
            Assert.Equal("README.md", nuspec.Descendants().Single(e => e.Name.LocalName == "readme").Value);
            Assert.True(File.Exists(Path.Combine(sample.Feed, $"{id}.{sample.Version}.snupkg")), $"no symbols package for {id}");
        }
    }

    [Theory]
    [InlineData("epoll")]
    [InlineData("sockets")]
    public async Task TheSample_OnThePackagesAlone_NamesRstFinEpipeAndAHungPeer(string transport)
    {
        await using var server = await sample.StartAsync(transport);

        // RST: SO_LINGER 0 and close.
        using (var client = await server.ConnectAsync())
        {
            await client.SendLineAsync("hello");
            Assert.Equal("hello", await client.ReadLineAsync());
            client.Socket.LingerState = new LingerOption(true, 0);
            client.Socket.Close();
            Assert.Equal("closed peer_reset errno=104", await server.CloseOfAsync(client));
        }

        // FIN: the client shuts down its write side and reads to the end; nothing was lost either way.
        using (var client = await server.ConnectAsync())
        {
            await client.SendLineAsync("hello");
            Assert.Equal("hello", await client.ReadLineAsync());
            client.Socket.Shutdown(SocketShutdown.Send);
            await client.ReadToEndAsync();
            Assert.Equal("closed peer_closed errno=0", await server.CloseOfAsync(client));
        }

        // EPIPE: the server streams without reading; the client closes with nothing unread (FIN). The next line draws
        // the closed socket's RST, the one after it fails with EPIPE.
        using (var client = await server.ConnectAsync())
        {
            await client.SendLineAsync("stream 30 150");
            Assert.Equal("line 0", await client.ReadLineAsync());
            client.Socket.Close();
            Assert.Equal("closed broken_pipe errno=32", await server.CloseOfAsync(client));
        }

        // A hung peer: connected, silent, reading nothing. Six heartbeat intervals of 300 ms without a line: not two,
        // since a cold sample process once took longer than 600 ms to see its first RST on a loaded machine, and
        // the heartbeat named that peer instead.
        using (var client = await server.ConnectAsync())
        {
            var started = Stopwatch.StartNew();
            Assert.Equal("closed heartbeat_timeout errno=0", await server.CloseOfAsync(client));
            Assert.InRange(started.Elapsed, TimeSpan.FromMilliseconds(1750), CaseTimeout);
        }
    }
}

/// <summary>Packs once per run, into a feed of its own, under a version no package cache has seen.</summary>
public sealed class PackagedSample : IDisposable
{
    private readonly string root;
    private readonly string work = Directory.CreateTempSubdirectory("packaged-sample-").FullName;

    public PackagedSample()
    {
        root = FindRepositoryRoot();
        Version = $"0.9.0-test.{DateTime.UtcNow:yyyyMMddHHmmss}.{Environment.ProcessId}";
        Feed = Path.Combine(work, "feed");
        var configuration = AppContext.BaseDirectory.Contains("/Debug/", StringComparison.Ordinal) ? "Debug" : "Release";
        foreach (var project in new[] { "TcpConnections/TcpConnections.csproj", "Transport.Epoll/Transport.Epoll.csproj" })
        {
            Run("dotnet", root, "pack", Path.Combine(root, project), "-c", configuration, "--no-build", "--nologo",
                $"-p:PackageVersion={Version}", "-o", Feed);
        }

        var sampleDirectory = Path.Combine(work, "EchoServer");
        Directory.CreateDirectory(sampleDirectory);
        foreach (var file in new[] { "EchoServer.csproj", "Program.cs" })
        {
            File.Copy(Path.Combine(root, "samples", "EchoServer", file), Path.Combine(sampleDirectory, file));
        }

        File.WriteAllText(Path.Combine(sampleDirectory, "nuget.config"), $"""
            <?xml version="1.0" encoding="utf-8"?>
            <configuration>
              <packageSources>
                <clear />
                <add key="local" value="{Feed}" />
                <add key="nuget.org" value="https://api.nuget.org/v3/index.json" />
              </packageSources>
            </configuration>
            """);
        Run("dotnet", sampleDirectory, "build", "-c", "Release", "--nologo", $"-p:TcpConnectionsVersion={Version}", "-o", Path.Combine(work, "out"));
        SampleDll = Path.Combine(work, "out", "EchoServer.dll");
    }

    public string Version { get; }

    public string Feed { get; }

    public string SampleDll { get; }

    public XDocument Nuspec(string id)
    {
        using var package = ZipFile.OpenRead(Path.Combine(Feed, $"{id}.{Version}.nupkg"));
        using var stream = package.GetEntry($"{id}.nuspec")!.Open();
        return XDocument.Load(stream);
    }

    /// <summary>The assemblies a package carries, one per target framework.</summary>
    public IReadOnlyList<string> Libraries(string id)
    {
        using var package = ZipFile.OpenRead(Path.Combine(Feed, $"{id}.{Version}.nupkg"));
        return package.Entries.Select(e => e.FullName).Where(n => n.StartsWith("lib/", StringComparison.Ordinal) && n.EndsWith(".dll", StringComparison.Ordinal)).Order(StringComparer.Ordinal).ToList();
    }

    public IReadOnlyList<string> Dependencies(string id) =>
        Nuspec(id).Descendants().Where(e => e.Name.LocalName == "dependency").Select(e => (string)e.Attribute("id")!).Distinct().ToList();

    public Task<SampleServer> StartAsync(string transport) => SampleServer.StartAsync(SampleDll, transport);

    public void Dispose()
    {
        try
        {
            Directory.Delete(work, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private static void Run(string file, string directory, params string[] arguments)
    {
        var start = new ProcessStartInfo(file) { WorkingDirectory = directory, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromMinutes(5)))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} {string.Join(' ', arguments)} did not finish in 5 minutes");
        }

        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{file} {string.Join(' ', arguments)} exited {process.ExitCode}:\n{output.Result}\n{error.Result}");
        }
    }

    private static string FindRepositoryRoot()
    {
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            if (File.Exists(Path.Combine(directory.FullName, "GameServer.sln")))
            {
                return directory.FullName;
            }
        }

        throw new InvalidOperationException($"no GameServer.sln above {AppContext.BaseDirectory}");
    }
}
