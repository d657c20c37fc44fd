using DotNetty.Buffers;
using GameProtocol;
using GameProtocol.Pipeline;
using GameServer.Options;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Orleans.Storage;
using TcpConnections;

namespace GameServer.Cluster;

/// <summary>A room grain's saved state: its members (the seats) and where each last was.</summary>
[GenerateSerializer]
[Alias("gs.RoomState")]
public sealed class RoomState
{
    [Id(0)] public List<MemberState> Members { get; set; } = [];

    [Id(1)] public long Tick { get; set; }

    /// <summary>When it was saved: a room back on another silo counts the ticks it missed, so its ticks only grow.</summary>
    [Id(2)] public long SavedAtUnixMs { get; set; }
}

[GenerateSerializer]
[Alias("gs.MemberState")]
public sealed class MemberState
{
    [Id(0)] public string SessionId { get; set; } = string.Empty;

    [Id(1)] public float X { get; set; }

    [Id(2)] public float Y { get; set; }

    [Id(3)] public long Seq { get; set; }

    /// <summary>Grows with each change of <see cref="Connected"/>: the sessions take each Presence once, in order.</summary>
    [Id(6)] public long PresenceVersion { get; set; }

    /// <summary>The session's inbound sequence number of the Move applied last.</summary>
    [Id(5)] public long Order { get; set; }

    /// <summary>What the others were last told about this member (Presence), so a room back on another silo does not tell them again.</summary>
    [Id(4)] public bool Connected { get; set; } = true;
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
    private readonly Guid incarnation = Guid.NewGuid(); // this activation's: gateways order ticks within it
    private IGrainTimer? ticker;
    private IGrainTimer? sweeper;
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
        if (saved.State.SavedAtUnixMs > 0)
        {
            saved.State.Tick += Math.Max(0, Now - saved.State.SavedAtUnixMs) * game.TickRateHz / 1000 + 1;
        }

        if (Members.Count > 0)
        {
            // Back from saved state: the seats are here, the routes are not. Each member says where it is now.
            Sweep();
            StartTicker();
        }

        return Task.CompletedTask;
    }

    public async Task Join(string sessionId, Route? route)
    {
        if (Find(sessionId) is null)
        {
            Members.Add(new MemberState { SessionId = sessionId });
            await SaveAsync(membership: true);
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
            sweeper?.Dispose();
            sweeper = null;
            try
            {
                await saved.ClearStateAsync();
            }
            finally
            {
                DeactivateOnIdle();
            }

            return;
        }

        await SaveAsync(membership: true);
    }

    public async Task SetRoute(string sessionId, Route? route)
    {
        if (Find(sessionId) is not { } changed)
        {
            return;
        }

        SetRouteOnly(sessionId, route);
        if (changed.Connected == route is not null)
        {
            return; // the others already know (a route refreshed after a failover, or a move between gateways)
        }

        changed.Connected = route is not null;
        changed.PresenceVersion++;
        await SaveAsync(membership: true);

        // Presence is a reliable message: it goes through each other member's session (numbered, saved, replayed). Not
        // awaited here (the room never waits for a session), but retried until each session has it.
        var presence = ProtocolSerializer.Serialize(new Presence(sessionId, changed.Connected));
        foreach (var member in Members)
        {
            if (member.SessionId != sessionId)
            {
                _ = NotifyAsync(GrainFactory.GetGrain<ISessionGrain>(member.SessionId), sessionId, changed.PresenceVersion, presence);
            }
        }
    }

    public Task Move(string sessionId, float x, float y, long seq, long order)
    {
        // One-way calls may overtake each other: the session's order (its inbound sequence number) decides which is newer.
        if (Find(sessionId) is { } member && order > member.Order)
        {
            member.Order = order;
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
                _ = gateway.Key.RoomUpdate(RoomId, incarnation, saved.State.Tick, frame, [.. gateway.Select(r => r.Value.ConnectionKey)]);
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

    /// <summary>
    /// Saves the room. A membership change (a seat, what Presence said) that fails to save is thrown to the session
    /// that asked, after the room drops its memory, so the session's retry repeats it against what Redis holds; a failed
    /// save of positions only is logged and tried again at the next interval.
    /// </summary>
    private async Task SaveAsync(bool membership = false)
    {
        lastSaveAt = Now;
        saved.State.SavedAtUnixMs = lastSaveAt;
        try
        {
            await saved.WriteStateAsync();
        }
        catch (InconsistentStateException ex)
        {
            // Another activation saved since (a split after a failover): this one's memory is stale; come back from Redis.
            Log.ClusterRoomWarning(logger, RoomId, $"saving failed: {ex.Message}; reloading");
            DeactivateOnIdle();
            if (membership)
            {
                throw;
            }
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            Log.ClusterRoomWarning(logger, RoomId, $"saving failed: {ex.Message}");
            if (membership)
            {
                DeactivateOnIdle();
                throw;
            }

            moved = true; // positions: at most one interval of movement is lost, and the sessions repeat their newest Move
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
        var sweep = TimeSpan.FromMilliseconds(cluster.RouteCheckMs);
        sweeper = this.RegisterGrainTimer(
            _ =>
            {
                Sweep();
                return Task.CompletedTask;
            },
            new GrainTimerCreationOptions(sweep, sweep) { KeepAlive = true });
    }

    /// <summary>
    /// Asks every member where it is. A session whose silo died comes back this way (and with it its timers: a session
    /// away past its window ends and leaves; one whose gateway died too is found out by its route check); a route
    /// lost with a failover is refreshed. Members that ended but are still seated are told to leave.
    /// </summary>
    private void Sweep()
    {
        foreach (var member in Members)
        {
            _ = GrainFactory.GetGrain<ISessionGrain>(member.SessionId).RefreshRoute(RoomId);
        }
    }

    private async Task NotifyAsync(ISessionGrain session, string about, long version, byte[] message)
    {
        var delay = TimeSpan.FromMilliseconds(100);
        var deadline = Now + cluster.GrainCallTimeoutMs;
        while (true)
        {
            try
            {
                await session.Notify(about, version, message);
                return;
            }
            catch (Exception ex) when (ex is not OutOfMemoryException && Now + delay.TotalMilliseconds < deadline)
            {
                await Task.Delay(delay);
                delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, TimeSpan.TicksPerSecond));
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                Log.ClusterRoomWarning(logger, RoomId, $"a Presence could not be handed to its session: {ex.Message}");
                return;
            }
        }
    }
}
