using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using GameClient;
using GameProtocol;
using GameServer.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace GameServer.Tests;

/// <summary>
/// Debian's HAProxy with the shipped <c>ops/haproxy/haproxy.cfg</c> in front of two servers: it sends players to a
/// ready server, takes a server out of rotation on its /readyz as soon as it begins to stop, while that server's
/// players keep their connections and get their Goodbye through it, and sends the next player to the other one.
/// ./run.sh test installs HAProxy (Debian package <c>haproxy</c>).
/// </summary>
public class HaproxyTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task ShippedConfig_TakesAStoppingServerOutOfRotation_ByItsReadiness_WithoutCuttingItsPlayers()
    {
        var a = await TestServer.StartAsync($"--Metrics:Port={TestServer.FreePort()}", "--Server:ShutdownTimeoutMs=20000", "--Server:ProxyProtocol=true");
        await using var b = await TestServer.StartAsync($"--Metrics:Port={TestServer.FreePort()}", "--Server:ProxyProtocol=true");
        try
        {
            using var haproxy = await HaproxyProcess.StartAsync(a, b);
            await haproxy.WaitForAsync(s => s["gs1"].Status == "UP" && s["gs2"].Status == "UP");

            // A player that never answers a Goodbye, so the stopping server's drain lasts while we look.
            using var stays = await Wire.ConnectAsync(haproxy.Front);
            await stays.SendAsync(new Hello(1, "stays", null));
            Assert.IsType<Welcome>(await stays.ReceiveAsync(Patience));
            var (stopping, other, stoppingName) = a.Registry.Count == 1 ? (a, b, "gs1") : (b, a, "gs2");
            Assert.Equal(1, stopping.Registry.Count);
            Assert.Equal(0, other.Registry.Count);

            var stop = stopping.StopAsync();
            var goodbye = Assert.IsType<Goodbye>(await stays.ReceiveAsync(Patience));
            Assert.Equal("server_shutdown", goodbye.Reason);

            // Out of rotation by its 503, not because it went away: it is still draining.
            var state = await haproxy.WaitForAsync(s => s[stoppingName].Status == "DOWN");
            Assert.Equal("L7STS", state[stoppingName].CheckStatus);
            Assert.Equal("503", state[stoppingName].CheckCode);
            Assert.False(stop.IsCompleted, "the stopping server should still be waiting for its player's Goodbye");

            await using (var next = await GameConnection.ConnectAsync(new GameClientOptions { Host = "127.0.0.1", Port = haproxy.Front.Port, PlayerName = "next" }))
            {
                Assert.NotNull(next.Welcome);
                Assert.Equal(1, other.Registry.Count);
                await next.GoodbyeAsync();
            }

            // The first player's connection through HAProxy was never cut: it answers now and the drain ends.
            await stays.SendAsync(new Goodbye("bye", 1));
            await stop.WaitAsync(Patience);
            // The server knew the player by its own address, from HAProxy's PROXY v2 header, not by HAProxy's.
            var client = TcpConnections.TcpConnection.FormatEndPoint(stays.Socket.LocalEndPoint);
            Assert.Contains(stopping.Logs.Entries, e => e.EventId.Id == 1001 && e.Message.Contains($"from {client} closed: server_shutdown", StringComparison.Ordinal));
            Assert.Contains(stopping.Logs.Entries, e => e.EventId.Id == 1005 && e.Message.Contains($"is {client} by the PROXY protocol v2 header", StringComparison.Ordinal));
        }
        finally
        {
            await a.DisposeAsync();
        }
    }

    private sealed record ServerState(string Status, string CheckStatus, string CheckCode);

    private sealed class HaproxyProcess : IDisposable
    {
        private readonly ToolProcess process;
        private readonly string folder;

        private HaproxyProcess(ToolProcess process, string folder, IPEndPoint front)
        {
            this.process = process;
            this.folder = folder;
            Front = front;
        }

        public IPEndPoint Front { get; }

        private string Socket => Path.Combine(folder, "admin.sock");

        public static async Task<HaproxyProcess> StartAsync(TestServer gs1, TestServer gs2)
        {
            var shipped = await File.ReadAllTextAsync(Repo.Path("ops", "haproxy", "haproxy.cfg"));
            var folder = Directory.CreateTempSubdirectory("haproxy-").FullName;
            var front = new IPEndPoint(IPAddress.Loopback, TestServer.FreePort());

            // The shipped file with this test's addresses: everything else (checks, intervals, balance) as shipped.
            string Replace(string text, string from, string to)
            {
                Assert.Contains(from, text, StringComparison.Ordinal);
                return text.Replace(from, to, StringComparison.Ordinal);
            }

            var config = Replace(shipped, "bind :7777", $"bind {front}");
            config = Replace(config, "stats socket /run/haproxy/admin.sock", $"stats socket {Path.Combine(folder, "admin.sock")}");
            config = Replace(config, "default-server check port 9464", "default-server check");
            config = Replace(config, "server gs1 10.0.0.5:7777", $"server gs1 {gs1.EndPoint} port {MetricsPort(gs1)}");
            config = Replace(config, "server gs2 10.0.0.6:7777", $"server gs2 {gs2.EndPoint} port {MetricsPort(gs2)}");
            var path = Path.Combine(folder, "haproxy.cfg");
            await File.WriteAllTextAsync(path, config);

            return new HaproxyProcess(ToolProcess.Start("haproxy", "haproxy", folder, "-db", "-f", path), folder, front);
        }

        /// <summary>Asks the runtime API for the backend's servers until <paramref name="done"/> holds.</summary>
        public async Task<Dictionary<string, ServerState>> WaitForAsync(Func<Dictionary<string, ServerState>, bool> done)
        {
            var deadline = DateTime.UtcNow + Patience;
            Dictionary<string, ServerState> state = [];
            while (true)
            {
                try
                {
                    state = await ShowStatAsync();
                    if (state.Count == 2 && done(state))
                    {
                        return state;
                    }
                }
                catch (SocketException)
                {
                    // HAProxy is still starting.
                }

                Assert.True(
                    DateTime.UtcNow < deadline && !process.HasExited,
                    $"HAProxy's servers: {string.Join("; ", state.Select(s => $"{s.Key} {s.Value}"))}\n{process.Log}");
                await Task.Delay(100);
            }
        }

        public void Dispose()
        {
            process.Dispose();
            Directory.Delete(folder, recursive: true);
        }

        private static int MetricsPort(TestServer server) =>
            server.Services.GetRequiredService<GameServer.Hosting.OpsEndpoint>().Address!.Port;

        private async Task<Dictionary<string, ServerState>> ShowStatAsync() =>
            (await HaproxyStats.ReadAsync(Socket))
                .Where(row => row["pxname"] == "gameservers" && row["svname"] is "gs1" or "gs2")
                .ToDictionary(row => row["svname"], row => new ServerState(row["status"], row["check_status"], row["check_code"]));
    }
}
