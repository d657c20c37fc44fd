using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using DotNetty.Transport.Channels;

namespace Transport.Conformance.Tests.Stress;

/// <summary>Where the transport under test sits in a stressed connection.</summary>
public enum StressSide
{
    /// <summary>The transport accepts; plain sockets connect.</summary>
    ServerWithSocketClients,

    /// <summary>The transport connects; a plain-socket server accepts.</summary>
    ClientWithSocketServer,

    /// <summary>The transport on both ends, each with its own loops.</summary>
    ClientAndServer,
}

/// <summary>What a round did, for the test's output and its assertions. <see cref="Failures"/> keeps the first few of <see cref="FailureCount"/>.</summary>
public sealed record RoundResult(
    long Seed,
    TimeSpan Duration,
    IReadOnlyList<string> Failures,
    int FailureCount,
    int Connections,
    long PlannedBytes,
    int Cuts,
    int ChannelWriters,
    int UnwritableChannels,
    long UnwritableTransitions,
    long Pauses,
    string EndTimes)
{
    public override string ToString() =>
        $"seed {Seed}: {Connections} connections, {PlannedBytes / (1024.0 * 1024):0.0} MB planned, {Cuts} cut short, " +
        $"{UnwritableChannels} of {ChannelWriters} channels went unwritable ({UnwritableTransitions} times), {Pauses} reader pauses, " +
        $"{FailureCount} failures, {Duration.TotalSeconds:0.0} s; {EndTimes}";
}

/// <summary>
/// Runs one round: draws the plans, opens every connection (each server end learns its plan from the client's port),
/// starts all writers at once, waits until every end has ended, then judges each connection by its plan: complete
/// streams where nothing was cut, exact prefixes where something was, and the end each side was meant to see.
/// </summary>
public static class StressRunner
{
    private const int Backlog = 1024;

    /// <summary>Connections opened at once: a 2-core machine's accept loop keeps up with this many.</summary>
    private const int ConnectConcurrency = 32;

    private static readonly TimeSpan ConnectTimeout = TimeSpan.FromSeconds(30);

    /// <summary>A round with nothing wrong takes a few seconds; a lost byte leaves its reader waiting until this.</summary>
    private static readonly TimeSpan RoundTimeout = TimeSpan.FromSeconds(60);

    /// <summary>After the first bad byte, other connections' reports are collected this long before all are reset.</summary>
    private static readonly TimeSpan FailureGrace = TimeSpan.FromMilliseconds(500);

    private static readonly TimeSpan AbortTimeout = TimeSpan.FromSeconds(10);

    public static async Task<RoundResult> RunAsync(TransportKind kind, int workerLoops, StressSide side, long seed, StressShape shape)
    {
        var clock = Stopwatch.StartNew();
        var plans = shape.Draw(seed);
        var round = new StressRound(seed, plans);
        var failures = new List<string>();
        var clientEnds = new List<IStressEnd>();
        var acceptedSockets = new List<Socket>();
        await using var serverLoops = side != StressSide.ClientWithSocketServer ? TransportLoops.Create(kind, workerLoops) : null;
        await using var clientLoops = side != StressSide.ServerWithSocketClients ? TransportLoops.Create(kind, workerLoops) : null;
        IChannel? listener = null;
        Socket? socketListener = null;
        Task accepting = Task.CompletedTask;
        var connectionTimes = string.Empty;
        var unkeptFailures = 0;
        try
        {
            EndPoint server;
            if (serverLoops is not null)
            {
                listener = await serverLoops.ListenAsync(b => b
                    .Option(ChannelOption.SoBacklog, Backlog)
                    .ChildOption(ChannelOption.AutoRead, false)
                    .ChildHandler(new ActionChannelInitializer<IChannel>(ch => ch.Pipeline.AddLast(NettyEnd.ForServer(round)))));
                // The stock listener is a dual-stack IPv6 socket: its address reads [::ffff:127.0.0.1], which an IPv4 client cannot use.
                server = new IPEndPoint(IPAddress.Loopback, ((IPEndPoint)listener.LocalAddress).Port);
            }
            else
            {
                socketListener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                socketListener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
                socketListener.Listen(Backlog);
                server = socketListener.LocalEndPoint!;
                accepting = AcceptAllAsync(round, socketListener, acceptedSockets);
            }

            foreach (var batch in plans.Chunk(ConnectConcurrency))
            {
                clientEnds.AddRange(await Task.WhenAll(batch.Select(plan => clientLoops is null
                    ? ConnectSocketAsync(round, plan, server)
                    : ConnectChannelAsync(round, plan, clientLoops, server))).WaitAsync(ConnectTimeout));
            }

            await round.AllServerEnds.WaitAsync(ConnectTimeout);
            var ends = clientEnds.Concat(round.ServerEnds).ToList();
            foreach (var end in ends)
            {
                end.Start();
            }

            var running = Stopwatch.StartNew();
            var endedAfter = ends.Select(e => e.Ended.ContinueWith(_ => (running.Elapsed, e), TaskScheduler.Default)).ToList();
            var allEnded = Task.WhenAll(ends.Select(e => e.Ended));
            var first = await Task.WhenAny(allEnded, round.FirstFailure, Task.Delay(RoundTimeout));
            var judged = ends;
            if (first != allEnded)
            {
                if (first == round.FirstFailure)
                {
                    // Wrong bytes stop the round; what the connections reset after them saw says nothing more.
                    await Task.WhenAny(allEnded, Task.Delay(FailureGrace));
                    judged = [.. ends.Where(e => e.Ended.IsCompleted)];
                }
                else
                {
                    failures.Add($"the round did not finish within {RoundTimeout.TotalSeconds:0} s; the connections left open:");
                }

                foreach (var end in ends)
                {
                    end.Abort();
                }

                await Task.WhenAny(allEnded, Task.Delay(AbortTimeout));
            }

            var times = endedAfter.Where(t => t.IsCompletedSuccessfully).Select(t => t.Result).OrderBy(t => t.Elapsed).ToList();
            if (times.Count > 0)
            {
                connectionTimes = $"ends closed after {times[times.Count / 2].Elapsed.TotalSeconds:0.0} s (median), {times[^1].Elapsed.TotalSeconds:0.0} s (last: connection {times[^1].e.Plan?.Id})";
            }

            failures.InsertRange(0, round.Failures);
            unkeptFailures = round.FailureCount - round.Failures.Count;
            var byId = judged.Where(e => e.Plan is not null).ToLookup(e => (e.Plan!.Id, e.Role));
            foreach (var plan in plans)
            {
                var clientEnd = byId[(plan.Id, EndRole.Client)].SingleOrDefault();
                var serverEnd = byId[(plan.Id, EndRole.Server)].SingleOrDefault();
                if (clientEnd is not null && serverEnd is not null)
                {
                    failures.AddRange(Judge(plan, ReportOf(clientEnd, EndRole.Client), ReportOf(serverEnd, EndRole.Server)));
                }
            }
        }
        finally
        {
            foreach (var end in clientEnds.Concat(round.ServerEnds))
            {
                end.Abort();
            }

            if (listener is not null)
            {
                await listener.CloseAsync();
            }

            socketListener?.Dispose();
            await accepting.ContinueWith(_ => { }, TaskScheduler.Default);
            lock (acceptedSockets)
            {
                acceptedSockets.ForEach(s => s.Dispose());
            }
        }

        return new RoundResult(
            seed,
            clock.Elapsed,
            failures,
            failures.Count + unkeptFailures,
            plans.Count,
            plans.Sum(p => p.ClientBytes + p.ServerBytes),
            plans.Count(p => p.Cut is not null),
            side switch
            {
                StressSide.ClientAndServer => plans.Count * 2,
                _ => plans.Count,
            },
            round.UnwritableChannels,
            round.UnwritableTransitions,
            round.Pauses,
            connectionTimes);
    }

    /// <summary>What each end of a connection must have seen, by its plan. Wrong bytes were reported as they came.</summary>
    public static IEnumerable<string> Judge(ConnectionPlan plan, EndReport client, EndReport server)
    {
        if (client.Outcome == EndOutcome.Corrupted || server.Outcome == EndOutcome.Corrupted)
        {
            yield break;
        }

        var what = $"connection {plan.Id} ({plan}); client {client}; server {server}";
        if (plan.Cut is not { } cut)
        {
            if (client.Received != plan.ServerBytes || server.Received != plan.ClientBytes)
            {
                yield return $"incomplete: {what}";
            }
            else if (client.Outcome != EndOutcome.LocalClose || server.Outcome != EndOutcome.PeerEof)
            {
                yield return $"a complete exchange must end with the client's close and the server seeing its FIN: {what}";
            }

            yield break;
        }

        var cutter = cut.By == EndRole.Client ? client : server;
        var peer = cut.By == EndRole.Client ? server : client;
        if (peer.Received > cut.AtByte)
        {
            yield return $"the peer received more than the {cut.AtByte} B written before the cut: {what}";
        }
        else if (cutter.FinAfterEveryWrite && (peer.Outcome != EndOutcome.PeerEof || peer.Received != cut.AtByte))
        {
            yield return $"a FIN after all {cut.AtByte} B were sent, but the peer ended with {peer.Outcome} after {peer.Received} B: {what}";
        }

        if (peer.Outcome is not (EndOutcome.PeerEof or EndOutcome.PeerReset))
        {
            yield return $"the peer of a cut must see EOF or a reset: {what}";
        }

        if (cutter.Outcome == EndOutcome.Open)
        {
            yield return $"the cutting end never closed: {what}";
        }
    }

    private static EndReport ReportOf(IStressEnd end, EndRole role) =>
        end.Ended.IsCompletedSuccessfully ? end.Ended.Result : new EndReport(role, EndOutcome.Open, 0, 0, false, false, "never ended");

    private static async Task<IStressEnd> ConnectSocketAsync(StressRound round, ConnectionPlan plan, EndPoint server) =>
        await SocketEnd.ConnectAsync(round, plan, server);

    private static async Task<IStressEnd> ConnectChannelAsync(StressRound round, ConnectionPlan plan, TransportLoops loops, EndPoint server)
    {
        var end = NettyEnd.ForClient(round, plan);
        var channel = await loops.ClientBootstrap()
            .Option(ChannelOption.TcpNodelay, true)
            .Handler(new ActionChannelInitializer<IChannel>(ch =>
            {
                NettyEnd.ApplyBuffers(ch, plan, EndRole.Client);
                ch.Pipeline.AddLast(end);
            }))
            .ConnectAsync(server);
        round.Offer(((IPEndPoint)channel.LocalAddress).Port, plan);
        return end;
    }

    private static async Task AcceptAllAsync(StressRound round, Socket listener, List<Socket> accepted)
    {
        for (var i = 0; i < round.Plans.Count; i++)
        {
            var socket = await listener.AcceptAsync();
            lock (accepted)
            {
                accepted.Add(socket);
            }

            _ = SocketEnd.AcceptedAsync(round, socket);
        }
    }
}
