using System.Net;
using System.Net.Sockets;
using DotNetty.Transport.Channels;
using GameProtocol;
using GameServer.Tests.Infrastructure;
using TcpConnections;
using Transport.Epoll;
using Xunit.Abstractions;

namespace GameServer.Tests;

/// <summary>
/// A room writes each tick over its last frame once nobody holds that frame any more (<see cref="Game.Room"/>), so a
/// frame still being sent must never be written over: on a full socket the rest of a frame waits in the transport (a
/// retained slice) while the next ticks come. Rooms of players on one event loop, every server socket with a small
/// send buffer, readers with small receive buffers that stall now and then, and players moving all the while: every
/// update each reader gets must be whole and its own room's, its ticks rising, each entry the state its player sent
/// (x = seq, y = -seq, never half of one move and half of another), no player's seq going back.
/// </summary>
public class RoomUpdateBytesTests(ITestOutputHelper output)
{
    // Rooms big enough that a frame (about 1.5 KB) often finds less room than itself in a full socket.
    private const int Rooms = 2;
    private const int RoomSize = 32;
    private const int ReceiveBufferBytes = 4096;
    private const int ServerSendBufferBytes = 4096;
    private static readonly TimeSpan RunFor = TimeSpan.FromSeconds(4);
    private static readonly TimeSpan MoveEvery = TimeSpan.FromMilliseconds(20);

    private static readonly string[] Settings =
    [
        "--Server:WorkerThreads=1", // every room's members on the loop whose sends fill
        "--Game:TickRateHz=100", // more ticks in flight behind a full socket
        "--Heartbeat:IntervalMs=3600000", // no Pings: the readers stall on purpose
        "--Server:SlowConsumerTimeoutMs=60000",
        "--Limits:FramesPerSecond=10000000", "--Limits:FrameBurst=10000000", "--Limits:BytesPerSecond=2000000000", "--Limits:ByteBurst=2000000000",
    ];

    [Fact]
    public async Task RoomUpdates_ThroughFullSocketsAndStallingReaders_ArriveWhole_RisingAndTheirOwnRooms()
    {
        await using var server = await TestServer.StartAsync(Settings);
        var players = new List<Player>();
        try
        {
            for (var i = 0; i < Rooms * RoomSize; i++)
            {
                players.Add(await Player.JoinAsync(server.EndPoint, $"room-{i / RoomSize}", i));
            }

            var serverSides = new List<TcpConnection>();
            var queued = new WriteCounter();
            foreach (var player in players)
            {
                var serverSide = await server.ServerSideOfAsync(player.LocalEndPoint);
                Assert.True(await serverSide.Channel.EventLoop.SubmitAsync(() => serverSide.Channel.Configuration.SetOption(ChannelOption.SoSndbuf, ServerSendBufferBytes)));
                serverSide.Channel.Pipeline.AddFirst("room-update-write-counter", queued);
                serverSides.Add(serverSide);
            }

            using var stop = new CancellationTokenSource(RunFor);
            await Task.WhenAll(players.Select(p => p.RunAsync(stop.Token)));

            foreach (var player in players)
            {
                output.WriteLine(player.Describe());
            }

            Assert.All(players, p => Assert.Null(p.Failure));
            Assert.All(players, p => Assert.True(p.Updates >= 20, $"{p.Name} read only {p.Updates} updates"));
            Assert.All(players, p => Assert.True(p.Roster is not null, $"{p.Name} never saw its room full"));

            // Each room's updates named the same players, and no player is in two rooms.
            var rosters = players.GroupBy(p => p.Room).Select(g => g.Select(p => p.Roster!).Distinct(StringComparer.Ordinal).ToList()).ToList();
            Assert.All(rosters, r => Assert.Single(r));
            var ids = rosters.SelectMany(r => r[0].Split(' ')).ToList();
            Assert.Equal(ids.Count, ids.Distinct(StringComparer.Ordinal).Count());
            Assert.All(players, p => Assert.Contains(p.SessionId, p.Roster!.Split(' ')));

            // The case proved something only if frames did wait behind full sockets. On epoll an update goes through
            // the pipeline (past the counter) only when the socket had something queued or took none of it, or the
            // rest of a partial direct write does; the stock transport sends every update that way.
            var partial = serverSides.Sum(s => s.Channel is EpollSocketChannel epoll ? epoll.PartialDirectWrites : 0);
            output.WriteLine($"updates written through the pipeline: {queued.Writes}, partial direct writes: {partial}");
            Assert.True(queued.Writes > 0, "no room update waited behind a full socket: the case proved nothing");
        }
        finally
        {
            foreach (var player in players)
            {
                player.Dispose();
            }
        }
    }

    /// <summary>Counts the writes that go down the pipeline (shared by every connection: the game writes nothing else then).</summary>
    private sealed class WriteCounter : ChannelHandlerAdapter
    {
        private long writes;

        public long Writes => Interlocked.Read(ref writes);

        public override bool IsSharable => true;

        public override Task WriteAsync(IChannelHandlerContext context, object message)
        {
            Interlocked.Increment(ref writes);
            return context.WriteAsync(message);
        }
    }

    /// <summary>A raw-socket player: moves every few ms, reads in bursts with stalls, checks every update it reads.</summary>
    private sealed class Player : IDisposable
    {
        private readonly Wire wire;
        private readonly Random random;
        private readonly Dictionary<string, long> lastSeqs = new(StringComparer.Ordinal);
        private long lastTick;

        private Player(Wire wire, string name, string room, string sessionId, int seed)
        {
            this.wire = wire;
            Name = name;
            Room = room;
            SessionId = sessionId;
            random = new Random(seed);
        }

        public string Name { get; }

        public string Room { get; }

        public string SessionId { get; }

        /// <summary>The ids the first update of the full room named, in order; every later one must name the same.</summary>
        public string? Roster { get; private set; }

        public int Updates { get; private set; }

        public int Stalls { get; private set; }

        public string? Failure { get; private set; }

        public EndPoint? LocalEndPoint => wire.Socket.LocalEndPoint;

        public static async Task<Player> JoinAsync(IPEndPoint server, string room, int index)
        {
            // Before connecting: the window scale is agreed in the handshake.
            var socket = new Socket(server.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true, ReceiveBufferSize = ReceiveBufferBytes };
            await socket.ConnectAsync(server);
            var wire = new Wire(socket);
            var name = $"p{index}";
            await wire.SendRawAsync([.. Wire.Frame(new Hello(Framing.ProtocolVersion1, name, null)), .. Wire.Frame(new JoinRoom(room))]);
            var welcome = Assert.IsType<Welcome>(await wire.ReceiveAsync());
            return new Player(wire, name, room, welcome.SessionId, 7_000 + index);
        }

        public async Task RunAsync(CancellationToken stop)
        {
            var moving = MoveAsync(stop);
            try
            {
                await ReadAsync(stop);
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                // The run's time is up.
            }
            catch (Exception ex)
            {
                Failure ??= $"{Name}: {ex.GetType().Name}: {ex.Message}";
            }

            await moving;
        }

        public string Describe() => $"{Name} in {Room}: {Updates} updates to tick {lastTick}, {Stalls} stalls{(Failure is null ? "" : $", FAILED: {Failure}")}";

        public void Dispose() => wire.Dispose();

        private async Task MoveAsync(CancellationToken stop)
        {
            try
            {
                for (long seq = 1; !stop.IsCancellationRequested; seq++)
                {
                    // Seqs cross the MessagePack width steps (127/128, 255/256, ...) quickly, so frames change length.
                    await wire.SendAsync(new Move(seq * 7, seq * 7, -seq * 7));
                    await Task.Delay(MoveEvery, stop);
                }
            }
            catch (OperationCanceledException)
            {
            }
        }

        private async Task ReadAsync(CancellationToken stop)
        {
            var burstEnds = DateTime.UtcNow + TimeSpan.FromMilliseconds(random.Next(50, 200));
            while (!stop.IsCancellationRequested)
            {
                if (DateTime.UtcNow >= burstEnds)
                {
                    Stalls++;
                    await Task.Delay(random.Next(50, 300), stop);
                    burstEnds = DateTime.UtcNow + TimeSpan.FromMilliseconds(random.Next(50, 200));
                }

                Check(await wire.ReceiveAsync(stop: stop) ?? throw new EndOfStreamException("the server ended the stream"));
                if (Failure is not null)
                {
                    return;
                }
            }
        }

        private void Check(IMessage message)
        {
            if (message is not StateUpdate update)
            {
                Failure = $"{Name}: a {message.GetType().Name} among the room's updates";
                return;
            }

            if (update.Tick <= lastTick)
            {
                Failure = $"{Name}: tick {update.Tick} after tick {lastTick}";
                return;
            }

            lastTick = update.Tick;
            Updates++;
            // The room fills while the first players already read; once full it stays as it is.
            var roster = string.Join(' ', update.Players.Select(p => p.PlayerId));
            if (Roster is null && update.Players.Count == RoomSize)
            {
                Roster = roster;
            }

            if (Roster is not null && roster != Roster)
            {
                Failure = $"{Name}: tick {update.Tick} names [{roster}], the first named [{Roster}]";
                return;
            }

            foreach (var player in update.Players)
            {
                if (player.X != player.LastSeq || player.Y != -player.LastSeq)
                {
                    Failure = $"{Name}: tick {update.Tick}: {player.PlayerId} at ({player.X}, {player.Y}) with seq {player.LastSeq}: not one move's state";
                    return;
                }

                if (player.LastSeq < lastSeqs.GetValueOrDefault(player.PlayerId))
                {
                    Failure = $"{Name}: tick {update.Tick}: {player.PlayerId}'s seq went back from {lastSeqs[player.PlayerId]} to {player.LastSeq}";
                    return;
                }

                lastSeqs[player.PlayerId] = player.LastSeq;
            }
        }
    }
}
