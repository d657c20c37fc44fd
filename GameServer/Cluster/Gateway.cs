using System.Collections.Concurrent;
using DotNetty.Buffers;
using GameProtocol.Pipeline;
using GameServer.Game;
using GameServer.Hosting;
using GameServer.Options;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using TcpConnections;

namespace GameServer.Cluster;

/// <summary>
/// This gateway process as the cluster sees it: one shared Orleans client, one observer object that grains push to,
/// and the connections it carries by key (<c>{gateway id}/{connection id}</c>). It holds no game state: a key maps to
/// a live connection's handler and nothing else. Registered as a hosted service after the Orleans client, so on stop
/// it waits for the connections' last words to the grains (their drops) before the client goes.
/// </summary>
public sealed class Gateway : IGatewayObserver, IHostedService, IDisposable
{
    private readonly ConcurrentDictionary<string, ClusterSessionHandler> connections = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, RoomBatch> roomBatches = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<Task, bool> lastWords = new();
    private readonly Lazy<IGatewayObserver> reference;
    private static readonly TimeSpan ProbeRetryDelay = TimeSpan.FromSeconds(1);

    /// <summary>A room that sent nothing for this long is forgotten here (a live room sends every tick).</summary>
    private static readonly TimeSpan RoomIdleAfter = TimeSpan.FromSeconds(30);

    private readonly CancellationTokenSource stopping = new();
    private readonly CancellationToken stoppingToken;
    private int callingIn;
    private int lostSinceCall;
    private long lastPruneAt = Environment.TickCount64;
    private readonly ILogger<Gateway> logger;
    private readonly GameServerMetrics metrics;

    public Gateway(
        IClusterClient client, IOptions<ClusterModeOptions> cluster, IOptions<ServerOptions> server, GameServerMetrics metrics, ILogger<Gateway> logger)
    {
        Client = client;
        Options = cluster.Value;
        this.metrics = metrics;
        this.logger = logger;
        stoppingToken = stopping.Token;
        Id = Options.GatewayId.Length > 0 ? Options.GatewayId : $"{Environment.MachineName}:{server.Value.Port}";

        // Created on first use, when the client is connected. Kept for the process's life: grains hold it in routes.
        reference = new Lazy<IGatewayObserver>(() => Client.CreateObjectReference<IGatewayObserver>(this));
    }

    public IClusterClient Client { get; }

    public ClusterModeOptions Options { get; }

    public string Id { get; }

    /// <summary>This gateway as grains call it.</summary>
    public IGatewayObserver Reference => reference.Value;

    public int Count => connections.Count;

    public string Register(ClusterSessionHandler handler, TcpConnection connection)
    {
        var key = $"{Id}/{connection.Id}";
        connections[key] = handler;
        return key;
    }

    public void Unregister(string key) => connections.TryRemove(key, out _);

    /// <summary>A call a closing connection still owes the cluster (its drop), awaited before the client stops.</summary>
    public void Track(Task call)
    {
        lastWords[call] = true;
        _ = call.ContinueWith(t => lastWords.TryRemove(t, out _), TaskScheduler.Default);
    }

    public Task Deliver(string connectionKey, Frame[] frames)
    {
        if (connections.TryGetValue(connectionKey, out var handler))
        {
            handler.OnPushed(frames);
        }

        return Task.CompletedTask;
    }

    /// <summary>
    /// Fans one room tick out to this gateway's members of the room: one shared buffer, grouped by event loop
    /// (<see cref="UpdateBatch"/>, one per room so a room's newer tick replaces only its own older one). A member that
    /// is not writable is skipped: it gets the next tick instead of a queue of stale ones.
    /// </summary>
    public Task RoomUpdate(string roomId, Guid incarnation, long tick, byte[] frame, string[] connectionKeys)
    {
        PruneIdleRooms();
        var batch = roomBatches.GetOrAdd(roomId, static (_, metrics) => new RoomBatch(metrics), metrics);
        var update = Unpooled.WrappedBuffer(frame);
        try
        {
            lock (batch)
            {
                if (incarnation == batch.Incarnation && tick <= batch.LastTick)
                {
                    return Task.CompletedTask; // overtaken by a newer tick of the same room activation
                }

                // A room activated again (after a failover, or emptied and joined anew) counts its own ticks.
                batch.Incarnation = incarnation;
                batch.LastTick = tick;
                batch.LastUpdateAt = Environment.TickCount64;
                foreach (var key in connectionKeys)
                {
                    if (connections.TryGetValue(key, out var handler) && handler.UpdateTarget() is { } connection)
                    {
                        batch.Updates.Add(connection, (IByteBuffer)update.Retain());
                    }
                }

                batch.Updates.Dispatch();
            }
        }
        finally
        {
            update.Release();
        }

        return Task.CompletedTask;
    }

    /// <summary>
    /// Room ids are the players' choice, so the rooms this gateway ever carried would otherwise pile up: now and then
    /// the ones that sent nothing for a while are dropped (a room that comes back starts a new entry).
    /// </summary>
    private void PruneIdleRooms()
    {
        var now = Environment.TickCount64;
        var last = Interlocked.Read(ref lastPruneAt);
        if (now - last < (long)RoomIdleAfter.TotalMilliseconds || Interlocked.CompareExchange(ref lastPruneAt, now, last) != last)
        {
            return;
        }

        foreach (var (roomId, batch) in roomBatches)
        {
            lock (batch)
            {
                if (now - batch.LastUpdateAt > (long)RoomIdleAfter.TotalMilliseconds)
                {
                    roomBatches.TryRemove(new KeyValuePair<string, RoomBatch>(roomId, batch));
                }
            }
        }
    }

    public Task Close(string connectionKey, string reason, string detail)
    {
        if (connections.TryGetValue(connectionKey, out var handler))
        {
            handler.OnMovedAway(GameCloseReasons.TryParse(reason, out var known) ? known : GameCloseReasons.SessionTakenOver, detail);
        }

        return Task.CompletedTask;
    }

    /// <summary>
    /// Registered means the connection has not yet reported its end to its session (it unregisters where it sends the
    /// drop or the end). A connection in its Goodbye drain is still ours: its End is on the way.
    /// </summary>
    public Task<bool> Owns(string connectionKey) => Task.FromResult(connections.ContainsKey(connectionKey));

    /// <summary>
    /// Joins, then makes one real call into the cluster before the game port opens: a cluster that has just formed
    /// can take seconds to place its first grain, and a player let in before that would wait for a Welcome.
    /// </summary>
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var role = $"gateway {Id}";
        Log.ClusterRole(logger, role, Options.ClusterId, Options.Redis);
        var since = System.Diagnostics.Stopwatch.StartNew();
        await CallInAsync(cancellationToken);
        Log.ClusterAnswering(logger, (long)since.Elapsed.TotalMilliseconds);
    }

    /// <summary>
    /// The client has no open connection to any silo's gateway left (the silos it used are gone). Its connections
    /// are opened only by calls it makes, and a silo reaches this gateway's observers (the room updates, the pushed
    /// messages) only through a connection it holds: a gateway whose players only listen would hear nothing from the
    /// rooms that come back on the other silos until one of them sent something. So it calls in at once.
    /// </summary>
    internal void OnClusterConnectionLost()
    {
        if (stoppingToken.IsCancellationRequested)
        {
            return;
        }

        // Left for a call-in already running to see, should this loss come after its call answered.
        Volatile.Write(ref lostSinceCall, 1);
        if (Interlocked.CompareExchange(ref callingIn, 1, 0) != 0)
        {
            return;
        }

        Log.ClusterConnectionLost(logger);
        _ = Task.Run(CallInWhileLostAsync);
    }

    private async Task CallInWhileLostAsync()
    {
        var since = System.Diagnostics.Stopwatch.StartNew();
        try
        {
            while (true)
            {
                while (Interlocked.Exchange(ref lostSinceCall, 0) == 1)
                {
                    await CallInAsync(stoppingToken);
                }

                Log.ClusterConnectionBack(logger, (long)since.Elapsed.TotalMilliseconds);
                Volatile.Write(ref callingIn, 0);

                // A loss between the last check and the line above found a caller and left its mark for it.
                if (Volatile.Read(ref lostSinceCall) == 0 || Interlocked.CompareExchange(ref callingIn, 1, 0) != 0)
                {
                    return;
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Stopping: nobody is left to hear from the cluster.
        }
    }

    /// <summary>One real call into the cluster, retried until it answers: it opens a connection to a live silo.</summary>
    private async Task CallInAsync(CancellationToken cancellationToken)
    {
        var probe = Client.GetGrain<ISessionGrain>($"probe-{Id}");
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                // A token nobody holds: the grain answers resume_unknown and keeps nothing.
                await probe.Resume($"probe-{Id}.-", 0, new Route(Reference, $"{Id}/probe"), 0).WaitAsync(cancellationToken);
                return;
            }
            catch (Exception ex) when (!cancellationToken.IsCancellationRequested && ex is not OutOfMemoryException)
            {
                Log.ClusterConnectRetry(logger, attempt, ex.Message);
                await Task.Delay(ProbeRetryDelay, cancellationToken);
            }
        }
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        // Before the client stops (hosted services stop in reverse order): its connections closing then are no loss.
        await stopping.CancelAsync();
        try
        {
            await Task.WhenAll(lastWords.Keys).WaitAsync(TimeSpan.FromSeconds(5), cancellationToken);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // The sessions whose drops did not arrive find out by their route checks.
        }
    }

    public void Dispose()
    {
        // A host that failed to start never ran StopAsync: a call-in still running must end with it all the same.
        stopping.Cancel();
        stopping.Dispose();
    }

    /// <summary>One room's updates on their way to this gateway's loops, and the newest tick sent.</summary>
    private sealed class RoomBatch(GameServerMetrics metrics)
    {
        // Counts the updates its loops found not writable at the moment of sending (coalesced), as the rooms' do.
        public UpdateBatch Updates { get; } = new(metrics);

        public Guid Incarnation { get; set; }

        public long LastUpdateAt { get; set; }

        public long LastTick { get; set; }
    }
}
