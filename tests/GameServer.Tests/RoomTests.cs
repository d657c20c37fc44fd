using DotNetty.Transport.Channels.Embedded;
using TcpConnections;
using GameServer.Game;
using GameServer.Hosting;
using GameServer.Options;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace GameServer.Tests;

/// <summary>Rooms under concurrent joins and leaves from different event loops.</summary>
public class RoomTests
{
    [Fact]
    public async Task LastLeaveRacingAJoin_NeverStrandsTheJoinerInADroppedRoom()
    {
        using var services = new ServiceCollection().AddMetrics().BuildServiceProvider();
        var metrics = new GameServerMetrics(services.GetRequiredService<System.Diagnostics.Metrics.IMeterFactory>());
        var rooms = new RoomManager(
            Microsoft.Extensions.Options.Options.Create(new GameOptions()), Microsoft.Extensions.Options.Options.Create(new ServerOptions()),
            TimeProvider.System, metrics, NullLogger<RoomManager>.Instance);

        for (var i = 0; i < 2000; i++)
        {
            var leaver = new PlayerSession(TcpConnection.Of(new EmbeddedChannel(new ConnectionHandler())), "a", "a", 1, null, TimeSpan.FromMilliseconds(100));
            var joiner = new PlayerSession(TcpConnection.Of(new EmbeddedChannel(new ConnectionHandler())), "b", "b", 1, null, TimeSpan.FromMilliseconds(100));
            rooms.Join(leaver, "r");

            using var start = new Barrier(2);
            var leave = Task.Run(() =>
            {
                start.SignalAndWait();
                rooms.Leave(leaver);
            });
            var join = Task.Run(() =>
            {
                start.SignalAndWait();
                rooms.Join(joiner, "r");
            });
            await Task.WhenAll(leave, join);

            // The joiner's room is the one the ticker sees, and it holds exactly the joiner.
            Assert.Same(rooms.Find("r"), joiner.Room);
            Assert.Equal(1, joiner.Room!.Count);
            rooms.Leave(joiner);
            Assert.Null(rooms.Find("r"));
        }
    }
}
