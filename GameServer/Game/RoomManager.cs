using System.Collections.Concurrent;
using DotNetty.Buffers;
using GameServer.Hosting;
using GameServer.Options;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace GameServer.Game;

/// <summary>Owns the rooms and the one ticker that drives them all at <c>Game:TickRateHz</c>.</summary>
public sealed class RoomManager : BackgroundService
{
    private readonly ConcurrentDictionary<string, Room> rooms = new(StringComparer.Ordinal);
    private readonly GameOptions options;
    private readonly TimeProvider time;
    private readonly GameServerMetrics metrics;
    private readonly ILogger<RoomManager> logger;
    private readonly int maxFrameBytes;

    public RoomManager(
        IOptions<GameOptions> options, IOptions<ServerOptions> server, TimeProvider time, GameServerMetrics metrics, ILogger<RoomManager> logger)
    {
        maxFrameBytes = server.Value.MaxFrameBytes;
        this.options = options.Value;
        this.time = time;
        this.metrics = metrics;
        this.logger = logger;
        metrics.Meter.CreateObservableGauge("gameserver.rooms.active", () => rooms.Count, description: "Rooms with players.");
    }

    public int RoomCount => rooms.Count;

    /// <summary>The live room with this id, if any.</summary>
    public Room? Find(string roomId) => rooms.TryGetValue(roomId, out var room) ? room : null;

    public void Join(PlayerSession player, string roomId)
    {
        Leave(player);
        while (true)
        {
            var room = rooms.GetOrAdd(roomId, id => new Room(id));
            if (room.TryAdd(player))
            {
                player.Room = room;
                return;
            }

            // It emptied between GetOrAdd and TryAdd: make sure it is gone, then join (or make) its successor.
            rooms.TryRemove(new KeyValuePair<string, Room>(roomId, room));
        }
    }

    public void Leave(PlayerSession player)
    {
        var room = player.Room;
        if (room is null)
        {
            return;
        }

        player.Room = null;
        if (room.Remove(player))
        {
            rooms.TryRemove(new KeyValuePair<string, Room>(room.Id, room));
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(1.0 / options.TickRateHz), time);
        var batch = new UpdateBatch(metrics);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                var now = time.GetUtcNow().ToUnixTimeMilliseconds();
                // The dictionary's enumerator, not its Values: those are a copy made under every lock, each tick.
                foreach (var (_, room) in rooms)
                {
                    // Unpooled: each room keeps its last frame to write the next tick over, and a room dropped when it
                    // empties is not ticked again to give it back; the garbage collector takes it with the room. (So
                    // room frames are outside the pool's leak detection; StateUpdateFrameTests and RoomUpdateBytesTests
                    // hold their reference counting and their bytes.)
                    if (!room.Tick(now, UnpooledByteBufferAllocator.Default, maxFrameBytes, batch))
                    {
                        Log.RoomTooBig(logger, room.Id, room.Count, maxFrameBytes);
                    }
                }

                metrics.UpdatesCoalesced(batch.Dispatch());
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            Log.RoomTickerStopped(logger);
        }
    }
}
