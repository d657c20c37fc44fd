using System.Collections.Concurrent;
using DotNetty.Buffers;
using GameServer.Hosting;
using GameServer.Options;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace GameServer.Game;

/// <summary>Owns the rooms and the one ticker that drives them all at <c>Game:TickRateHz</c>.</summary>
public sealed partial class RoomManager : BackgroundService
{
    private readonly ConcurrentDictionary<string, Room> rooms = new(StringComparer.Ordinal);
    private readonly GameOptions options;
    private readonly TimeProvider time;
    private readonly GameServerMetrics metrics;
    private readonly ILogger<RoomManager> logger;

    public RoomManager(IOptions<GameOptions> options, TimeProvider time, GameServerMetrics metrics, ILogger<RoomManager> logger)
    {
        this.options = options.Value;
        this.time = time;
        this.metrics = metrics;
        this.logger = logger;
        metrics.Meter.CreateObservableGauge("gameserver.rooms.active", () => rooms.Count, description: "Rooms with players.");
    }

    public int RoomCount => rooms.Count;

    public void Join(PlayerSession player, string roomId)
    {
        Leave(player);
        while (true)
        {
            var room = rooms.GetOrAdd(roomId, id => new Room(id));
            room.Add(player);

            // The room may have been emptied and dropped between GetOrAdd and Add; then join its successor.
            if (rooms.TryGetValue(roomId, out var current) && ReferenceEquals(current, room))
            {
                player.Room = room;
                return;
            }

            room.Remove(player);
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
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                var now = time.GetUtcNow().ToUnixTimeMilliseconds();
                foreach (var room in rooms.Values)
                {
                    metrics.UpdatesCoalesced(room.Tick(now, PooledByteBufferAllocator.Default));
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            LogStopped(logger);
        }
    }

    [LoggerMessage(EventId = 3000, Level = LogLevel.Debug, Message = "Room ticker stopped")]
    private static partial void LogStopped(ILogger logger);
}
