using DotNetty.Buffers;
using DotNetty.Common.Concurrency;
using DotNetty.Common.Utilities;
using DotNetty.Transport.Channels;
using GameServer.Hosting;
using TcpConnections;

namespace GameServer.Game;

/// <summary>
/// One tick's room updates, grouped by the event loop of the connection each goes to, so that a tick costs each loop
/// one task (one wake-up) instead of one per member. The ticker fills it and dispatches it once; each loop then sends
/// its connections' updates in the order they were added: straight to the socket where the transport can and nothing
/// is queued ahead (<see cref="TcpConnection.TrySendFrameNow"/>: the pipeline's per-write work was half of a
/// broadcast's cost), through the pipeline otherwise, and not at all to a peer that is not writable then (coalesced:
/// it gets a later tick's). The frames are whole (their length header included).
/// Latest wins per loop: when a loop has not yet started on the previous tick's updates, the new tick's replace them
/// (they are whole-room states, so the newer one says everything the older one did). A loop that falls behind thus
/// holds at most one tick of updates, and their lateness stays bounded by one tick plus its sending time instead of
/// growing with a queue of stale ones.
/// Room updates are not sequenced (section 10 of PROTOCOL.md): one may be written just before or after a reliable
/// message queued on the same loop around its tick, and a member whose update was replaced but who is not in the
/// next tick's (it dropped meanwhile) gets none until it is back. One thread at a time calls <see cref="Add"/> and
/// <see cref="Dispatch"/>: the ticker's, or a cluster gateway's caller holding its room's lock.
/// </summary>
public sealed class UpdateBatch
{
    // A tick's frames per loop, in the order the loops were first met. A list, not a dictionary: there are few loops
    // (one per core by default) and Add runs once per member per tick, so a scan by reference beats hashing.
    private readonly List<(IEventLoop Loop, List<(TcpConnection Connection, IByteBuffer Frame)> Frames)> byLoop = [];
    private readonly Dictionary<IEventLoop, Slot> slots = [];
    private readonly GameServerMetrics? metrics;

    /// <param name="metrics">Where updates left unsent because their peer was not writable are counted (coalesced).</param>
    public UpdateBatch(GameServerMetrics? metrics = null) => this.metrics = metrics;

    /// <summary>
    /// Queues <paramref name="frame"/>, a whole frame with its length header, for <paramref name="connection"/>; one
    /// reference to it is the batch's from now on. The same buffer may be queued for many connections (one reference
    /// each): nothing here moves its indexes.
    /// </summary>
    public void Add(TcpConnection connection, IByteBuffer frame)
    {
        var loop = connection.EventLoop;
        foreach (var (known, frames) in byLoop)
        {
            if (ReferenceEquals(known, loop))
            {
                frames.Add((connection, frame));
                return;
            }
        }

        // The list this loop's task emptied after its last send, when there is one: a list per loop per tick would be
        // garbage made 20 times a second for as long as the server runs (at thousands of players, tens of KiB each).
        // Otherwise one sized like this loop's share of the last tick.
        List<(TcpConnection Connection, IByteBuffer Frame)>? share = null;
        if (slots.TryGetValue(loop, out var slot))
        {
            share = Interlocked.Exchange(ref slot.Spare, null);
        }

        share ??= new List<(TcpConnection Connection, IByteBuffer Frame)>(slot?.LastCount ?? 0);
        share.Add((connection, frame));
        byLoop.Add((loop, share));
    }

    /// <summary>
    /// Hands every loop its share; the batch is empty afterwards and may be filled again. Returns how many updates of
    /// an earlier tick were replaced before their loop sent them.
    /// </summary>
    public int Dispatch()
    {
        var replaced = 0;
        foreach (var (loop, frames) in byLoop)
        {
            if (loop.IsShuttingDown)
            {
                // A task queued to a loop that is ending would never run, nor release the frames.
                Release(frames);
                continue;
            }

            if (!slots.TryGetValue(loop, out var slot))
            {
                slots[loop] = slot = new Slot(metrics);
            }

            slot.LastCount = frames.Count;

            if (Interlocked.Exchange(ref slot.Latest, frames) is { } stale)
            {
                // The task that will take it is already queued; it takes these instead.
                replaced += stale.Count;
                Release(stale);
                slot.Recycle(stale);
                continue;
            }

            try
            {
                loop.Execute(static state => ((Slot)state!).SendLatest(), slot);
            }
            catch (RejectedExecutionException)
            {
                // It began shutting down after the check.
                if (Interlocked.Exchange(ref slot.Latest, null) is { } unsent)
                {
                    Release(unsent);
                }
            }
        }

        byLoop.Clear();
        List<IEventLoop>? ending = null; // made only when a loop is ending: a tick allocates nothing of its own here
        foreach (var (loop, _) in slots)
        {
            if (loop.IsShuttingDown)
            {
                (ending ??= []).Add(loop);
            }
        }

        if (ending is not null)
        {
            foreach (var loop in ending)
            {
                if (slots.Remove(loop, out var ended) && Interlocked.Exchange(ref ended.Latest, null) is { } unsent)
                {
                    Release(unsent);
                }
            }
        }

        return replaced;
    }

    /// <summary>
    /// On the loop, in order with the close path: a connection that is no longer open gets nothing, so nothing is
    /// sent after our Goodbye (whose frame count stays exact).
    /// </summary>
    private static int Send(List<(TcpConnection Connection, IByteBuffer Frame)> frames)
    {
        // A room's members on this loop come one after another with the same frame: their references are dropped
        // together when the run ends (one atomic operation on a buffer the ticker's thread made, not one per member).
        IByteBuffer? run = null;
        var runReferences = 0;
        var notWritable = 0;
        var next = 0;
        var steps = frames.Count == 0 ? 0 : frames[0].Connection.PrefetchSteps; // one transport per loop
        try
        {
            for (; next < frames.Count; next++)
            {
                var (connection, frame) = frames[next];
                if (!ReferenceEquals(frame, run))
                {
                    // Forgotten before it is released: should the release throw, the finally must not release it again.
                    var ended = run;
                    var endedReferences = runReferences;
                    run = frame;
                    runReferences = 1;
                    ended?.Release(endedReferences);
                }
                else
                {
                    runReferences++;
                }

                PrefetchAhead(frames, next, steps);
                if (connection.TrySendFrameNow(frame) || connection.Phase != ConnectionPhase.Open || !connection.Channel.Active)
                {
                    continue;
                }

                if (!connection.Channel.IsWritable)
                {
                    // Coalesced: a peer that is not reading gets the next tick's update, not a queue of stale ones.
                    notWritable++;
                    continue;
                }

                // A slice of the payload (the prepender adds its own header): the frame may be shared by the room's
                // other members, on this loop and others, so its own indexes are never moved.
                var payload = frame.RetainedSlice(frame.ReaderIndex + FrameDecoder.HeaderBytes, frame.ReadableBytes - FrameDecoder.HeaderBytes);
                _ = connection.Channel.WriteAndFlushAsync(payload);
            }
        }
        finally
        {
            if (runReferences > 0)
            {
                run!.Release(runReferences);
            }

            // Whatever was not reached because something threw is still the batch's to release.
            for (next++; next < frames.Count; next++)
            {
                frames[next].Frame.Release();
            }
        }

        return notWritable;
    }

    /// <summary>
    /// Starts loading what the next members' sends will read, one step of each chain per send: member next + k gets
    /// step (steps - k), so each member's connection, channel, unsafe and outbound buffer have each had a send's time
    /// to arrive before the step that reads them. A tick visits every connection on the loop once and each send's
    /// kernel work evicts the last one's, so without this the loop's own time per update was mostly waiting for those
    /// first reads (perf: samples piled on the first load from each object).
    /// </summary>
    private static void PrefetchAhead(List<(TcpConnection Connection, IByteBuffer Frame)> frames, int next, int steps)
    {
        for (var ahead = 1; ahead <= steps && next + ahead < frames.Count; ahead++)
        {
            frames[next + ahead].Connection.PrefetchForSend(steps - ahead);
        }
    }

    /// <summary>What one loop has yet to send: the latest tick's updates, or null once its task took them.</summary>
    private sealed class Slot(GameServerMetrics? metrics)
    {
        public List<(TcpConnection Connection, IByteBuffer Frame)>? Latest;

        /// <summary>
        /// An emptied list for the ticker's next <see cref="Add"/> for this loop, or null. Handed over by exchange
        /// only: the loop puts back the list it sent while the ticker may be taking the one before.
        /// </summary>
        public List<(TcpConnection Connection, IByteBuffer Frame)>? Spare;

        /// <summary>How many updates the last tick had for this loop (the ticker's thread only).</summary>
        public int LastCount;

        public void SendLatest()
        {
            if (Interlocked.Exchange(ref Latest, null) is { } frames)
            {
                var notWritable = Send(frames); // not inside metrics?.…(): without metrics it would never run
                metrics?.UpdatesCoalesced(notWritable);
                Recycle(frames);
            }
        }

        /// <summary>
        /// Keeps <paramref name="frames"/>, whose every frame has been released, for the next tick. Cleared first:
        /// a spare list must not keep connections (or buffers) of players who have left reachable.
        /// </summary>
        public void Recycle(List<(TcpConnection Connection, IByteBuffer Frame)> frames)
        {
            frames.Clear();
            Volatile.Write(ref Spare, frames);
        }
    }

    private static void Release(List<(TcpConnection Connection, IByteBuffer Frame)> frames)
    {
        foreach (var (_, frame) in frames)
        {
            frame.Release();
        }
    }
}
