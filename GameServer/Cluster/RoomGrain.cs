using DotNetty.Buffers;
using GameProtocol;
using GameProtocol.Pipeline;
using GameServer.Options;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using TcpConnections;

namespace GameServer.Cluster;

/// <summary>A room grain's saved state: its members (the seats) and where each last was.</summary>
[GenerateSerializer]
[Alias("gs.RoomState")]
public sealed class RoomState
{
    [Id(0)] public List<MemberState> Members { get; set; } = [];

    [Id(1)] public long Tick { get; set; }
}

[GenerateSerializer]
[Alias("gs.MemberState")]
public sealed class MemberState
{
    [Id(0)] public string SessionId { get; set; } = string.Empty;

    [Id(1)] public float X { get; set; }

    [Id(2)] public float Y { get; set; }

    [Id(3)] public long Seq { get; set; }
}

/// <summary>
/// One room in the cluster: who sits in it (saved at once when that changes), where they are (saved every
/// <c>Cluster:RoomSaveIntervalMs</c>), and its tick at <c>Game:TickRateHz</c>. Each tick's StateUpdate is encoded
/// once and pushed once per gateway that carries members, which fans it out to its connections. Where each member's
/// connection is (its route) lives only in memory: a room that comes back on another silo asks its members.
/// Rule: the room never waits for a session (its calls to sessions are one-way), so a session may wait for the room.
/// </summary>
public sealed class RoomGrain : Grain, IRoomGrain
{
    private readonly IPersistentState<RoomState> saved;
    private readonly GameOptions game;
    private readonly ServerOptions server;
    private readonly ClusterModeOptions cluster;
    private readonly TimeProvider time;
    private readonly ILogger<RoomGrain> logger;
    private readonly Dictionary<string, Route> routes = new(StringComparer.Ordinal);
    private IGrainTimer? ticker;
    private bool moved;
    private long lastSaveAt;
    private bool tooBigLogged;

    public RoomGrain(
        [PersistentState("room", ClusterNames.Storage)] IPersistentState<RoomState> saved,
        IOptions<GameOptions> game,
        IOptions<ServerOptions> server,
        IOptions<ClusterModeOptions> cluster,
        TimeProvider time,
        ILogger<RoomGrain> logger)
    {
        this.saved = saved;
        this.game = game.Value;
        this.server = server.Value;
        this.cluster = cluster.Value;
        this.time = time;
        this.logger = logger;
    }

    private List<MemberState> Members => saved.State.Members;

    private string RoomId => this.GetPrimaryKeyString();

    private long Now => time.GetUtcNow().ToUnixTimeMilliseconds();

    public override Task OnActivateAsync(CancellationToken cancellationToken)
    {
        Log.ClusterRoomActivated(logger, RoomId, Members.Count);
        if (Members.Count > 0)
        {
            // Back from saved state: the seats are here, the routes are not. Each member says where it is now.
            foreach (var member in Members)
            {
                _ = GrainFactory.GetGrain<ISessionGrain>(member.SessionId).RefreshRoute(RoomId);
            }

            StartTicker();
        }

        return Task.CompletedTask;
    }

    public async Task Join(string sessionId, Route? route)
    {
        if (Find(sessionId) is null)
        {
            Members.Add(new MemberState { SessionId = sessionId });
            await SaveAsync();
        }

        SetRouteOnly(sessionId, route);
        StartTicker();
    }

    public async Task Leave(string sessionId)
    {
        routes.Remove(sessionId);
        if (Members.RemoveAll(m => m.SessionId == sessionId) == 0)
        {
            return;
        }

        if (Members.Count == 0)
        {
            ticker?.Dispose();
            ticker = null;
            await saved.ClearStateAsync();
            DeactivateOnIdle();
            return;
        }

        await SaveAsync();
    }

    public Task SetRoute(string sessionId, Route? route)
    {
        if (Find(sessionId) is null)
        {
            return Task.CompletedTask;
        }

        var wasConnected = routes.ContainsKey(sessionId);
        SetRouteOnly(sessionId, route);
        if (wasConnected != route is not null)
        {
            // Presence is a reliable message: it goes through each other member's session (numbered, kept for replay).
            var presence = ProtocolSerializer.Serialize(new Presence(sessionId, route is not null));
            foreach (var member in Members)
            {
                if (member.SessionId != sessionId)
                {
                    _ = GrainFactory.GetGrain<ISessionGrain>(member.SessionId).Notify(presence);
                }
            }
        }

        return Task.CompletedTask;
    }

    public Task Move(string sessionId, float x, float y, long seq)
    {
        if (Find(sessionId) is { } member)
        {
            member.X = x;
            member.Y = y;
            member.Seq = seq;
            moved = true;
        }

        return Task.CompletedTask;
    }

    public Task<byte[]> Snapshot() =>
        Task.FromResult(ProtocolSerializer.Serialize(new StateUpdate(saved.State.Tick, Now, Players(), AfterGap: true)));

    private async Task TickAsync(CancellationToken cancellationToken)
    {
        if (Members.Count == 0)
        {
            return;
        }

        var now = Now;
        saved.State.Tick++;
        var frame = Encode(new StateUpdate(saved.State.Tick, now, Players()));
        if (frame is not null)
        {
            foreach (var gateway in routes.GroupBy(r => r.Value.Gateway))
            {
                _ = gateway.Key.RoomUpdate(RoomId, frame, [.. gateway.Select(r => r.Value.ConnectionKey)]);
            }
        }

        if (moved && now - lastSaveAt >= cluster.RoomSaveIntervalMs)
        {
            moved = false;
            await SaveAsync();
        }
    }

    /// <summary>The whole frame, length header included, or null when the room does not fit one frame.</summary>
    private byte[]? Encode(StateUpdate update)
    {
        var buffer = MessageCodec.EncodeFramed(UnpooledByteBufferAllocator.Default, update);
        try
        {
            if (buffer.ReadableBytes - FrameDecoder.HeaderBytes > server.MaxFrameBytes)
            {
                if (!tooBigLogged)
                {
                    tooBigLogged = true;
                    Log.RoomTooBig(logger, RoomId, Members.Count, server.MaxFrameBytes);
                }

                return null;
            }

            var bytes = new byte[buffer.ReadableBytes];
            buffer.ReadBytes(bytes);
            return bytes;
        }
        finally
        {
            buffer.Release();
        }
    }

    private PlayerState[] Players() => [.. Members.Select(m => new PlayerState(m.SessionId, m.X, m.Y, m.Seq))];

    private void SetRouteOnly(string sessionId, Route? route)
    {
        if (route is null)
        {
            routes.Remove(sessionId);
        }
        else
        {
            routes[sessionId] = route;
        }
    }

    private MemberState? Find(string sessionId) => Members.Find(m => m.SessionId == sessionId);

    private async Task SaveAsync()
    {
        lastSaveAt = Now;
        try
        {
            await saved.WriteStateAsync();
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // A failed save of positions loses at most one interval of movement; membership saves go again with the next change.
            Log.ClusterRoomWarning(logger, RoomId, $"saving failed: {ex.Message}");
            moved = true;
        }
    }

    private void StartTicker()
    {
        if (ticker is not null)
        {
            return;
        }

        var period = TimeSpan.FromSeconds(1.0 / game.TickRateHz);
        ticker = this.RegisterGrainTimer(TickAsync, new GrainTimerCreationOptions(period, period) { KeepAlive = true });
    }
}
