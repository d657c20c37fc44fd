using System.Runtime.CompilerServices;
using DotNetty.Buffers;
using GameClient;
using GameProtocol;
using GameServer.Tests.Infrastructure;
using Microsoft.Extensions.Logging;

namespace GameServer.Tests;

/// <summary>
/// Every buffer the pipelines take is released, on the server and in the client library. DotNetty's leak detector at
/// <c>paranoid</c> tracks each buffer and logs <c>LEAK:</c> as an error for one that is garbage-collected unreleased;
/// a forced collection at the end of a session makes that happen now rather than by chance.
/// </summary>
public class LeakTests
{
    private static readonly string[] Paranoid = ["--Server:LeakDetection=paranoid", "--Game:TickRateHz=50"];

    [Fact]
    public async Task ABufferDroppedUnreleased_IsReportedAsALeak()
    {
        // The control: the check the session test relies on does fail when a buffer leaks.
        await using var server = await TestServer.StartAsync(Paranoid);
        DropABuffer();
        Collect();
        Assert.Contains(server.Logs.Entries, IsLeakReport);
    }

    [Fact]
    public async Task AFullSession_ReleasesEveryBuffer()
    {
        await using var server = await TestServer.StartAsync(Paranoid);
        await using (var client = await GameConnection.ConnectAsync(server.ClientOptions("leaks")))
        {
            await client.SendAsync(new JoinRoom("leaks"));
            for (var i = 1; i <= 50; i++)
            {
                await client.SendAsync(new Move(i, i, i));
                await client.SendAsync(new Echo(i, new byte[i * 10]));
            }

            await client.SendAsync(new StreamRequest(200, 512, 0));
            for (var items = 0; items < 200;)
            {
                if (await Receive.NextAsync<IMessage>(client) is StreamItem)
                {
                    items++;
                }
            }

            await client.SendAsync(new Ping(1, 0));
            await client.GoodbyeAsync();
            await client.Closed.WaitAsync(TimeSpan.FromSeconds(30));
        }

        await server.AssertAllClosedAsync();
        Collect();
        Assert.DoesNotContain(server.Logs.Entries, IsLeakReport);
    }

    private static bool IsLeakReport(CapturingLoggerProvider.LogEntry entry) =>
        entry.Level >= LogLevel.Error && entry.Message.Contains("LEAK", StringComparison.Ordinal);

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void DropABuffer() => PooledByteBufferAllocator.Default.Buffer(64).WriteInt(42);

    private static void Collect()
    {
        // DotNetty reports from a finalizer once the leaked buffer is collected; twice, as the finalizer's own
        // object graph is only collectable after the first pass.
        for (var i = 0; i < 2; i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }
    }
}
