using System.Numerics;
using DotNetty.Buffers;
using GameProtocol;
using GameProtocol.Pipeline;
using TcpConnections;

namespace GameServer.Game;

/// <summary>A set of players that see each other. Each tick broadcasts one StateUpdate, encoded once and shared.</summary>
public sealed class Room
{
    private readonly List<PlayerSession> members = [];
    private long tick;
    private bool closed;

    // The ticker's alone (one thread calls Tick at a time), reused by every tick: a room ticks 20 times a second for
    // as long as it lives, and what a tick allocates is collected with the players' long-lived objects, whose
    // promotion pauses the server for tens of milliseconds at thousands of players (docs/PERFORMANCE.md).
    private PlayerSession[] tickMembers = [];
    private StateUpdateFrame.Entry[] tickEntries = [];

    // The last tick's frame, one reference of it the room's own. The rule that makes writing over it safe: whatever
    // reads a frame's bytes holds a reference while it does (the frame reaches the loops only through UpdateBatch, one
    // reference per member; a send that could not finish keeps a retained slice, which counts). So when the room's is
    // the only reference left, nothing can still be reading, and the next tick writes over it; otherwise (a member's
    // write still queued) the next tick takes a new buffer.
    private IByteBuffer? frame;

    public Room(string id) => Id = id;

    public string Id { get; }

    public int Count
    {
        get
        {
            lock (members)
            {
                return members.Count;
            }
        }
    }

    /// <summary>
    /// Adds a player unless the room has already emptied: an empty room is dead for good (it is being dropped from
    /// the manager), so a late joiner must go to its successor instead of into a room nobody ticks.
    /// </summary>
    public bool TryAdd(PlayerSession player)
    {
        lock (members)
        {
            if (closed)
            {
                return false;
            }

            members.Add(player);
            return true;
        }
    }

    /// <summary>Removes a player; returns true when the room became empty (and so closed).</summary>
    public bool Remove(PlayerSession player)
    {
        lock (members)
        {
            members.Remove(player);
            closed = members.Count == 0;
            return closed;
        }
    }

    /// <summary>
    /// Tells the other version 2 members whether <paramref name="player"/> is connected now, if that changed since it
    /// last told them. Announcements for one player are serialised and each reads the player's state when it runs,
    /// so a drop and a quick resume racing on two loops can never leave "away" as the last word. Call without holding
    /// any session's lock: each send takes the receiving session's.
    /// </summary>
    public void AnnouncePresence(PlayerSession player)
    {
        lock (player.PresenceGate)
        {
            var connected = player.Status == SessionStatus.Attached;
            if (connected == player.AnnouncedConnected || player.Status == SessionStatus.Ended)
            {
                return;
            }

            player.AnnouncedConnected = connected;
            var presence = new Presence(player.SessionId, connected);
            foreach (var member in Members())
            {
                if (!ReferenceEquals(member, player) && member.Sequenced)
                {
                    member.SendReliable(presence);
                }
            }
        }
    }

    /// <summary>The room as it is now, for one member coming back after a gap (not counted as a tick).</summary>
    public StateUpdate Snapshot(long serverTimeUnixMs) =>
        new(Interlocked.Read(ref tick), serverTimeUnixMs, [.. Members().Select(m => m.State)], AfterGap: true);

    /// <summary>
    /// Encodes the current state once and adds it to <paramref name="batch"/> for every member with a connection;
    /// false when the update would exceed <paramref name="maxFrameBytes"/> (the room is too big for one frame) and
    /// nothing was added. One thread at a time: the room reuses its tick's arrays and frame. The room keeps its last
    /// frame from <paramref name="allocator"/> until it ticks empty, and a room usually leaves the manager as soon as
    /// it empties, without another tick: pass an allocator whose buffers need no release to return their memory
    /// (unpooled), so that such a frame goes with the room.
    /// </summary>
    public bool Tick(long serverTimeUnixMs, IByteBufferAllocator allocator, int maxFrameBytes, UpdateBatch batch)
    {
        int count;
        lock (members)
        {
            count = members.Count;
            if (tickMembers.Length < count)
            {
                tickMembers = new PlayerSession[Math.Max(count, tickMembers.Length * 2)];
            }

            members.CopyTo(tickMembers);
        }

        try
        {
            return count == 0 ? Empty() : Tick(tickMembers.AsSpan(0, count), serverTimeUnixMs, allocator, maxFrameBytes, batch);
        }
        finally
        {
            // Members who leave must not stay reachable from a room that still ticks.
            Array.Clear(tickMembers, 0, count);
        }
    }

    private bool Tick(ReadOnlySpan<PlayerSession> snapshot, long serverTimeUnixMs, IByteBufferAllocator allocator, int maxFrameBytes, UpdateBatch batch)
    {
        if (tickEntries.Length < snapshot.Length)
        {
            tickEntries = new StateUpdateFrame.Entry[tickMembers.Length];
        }

        var entries = tickEntries.AsSpan(0, snapshot.Length);
        for (var i = 0; i < snapshot.Length; i++)
        {
            var state = snapshot[i].State;
            entries[i] = new StateUpdateFrame.Entry(snapshot[i].EncodedSessionId, state.X, state.Y, state.LastSeq);
        }

        // A whole frame (header included): most go straight to their sockets (UpdateBatch).
        IByteBuffer update;
        try
        {
            update = NextFrame(allocator, StateUpdateFrame.FrameBytesAtMost(entries));
            StateUpdateFrame.Write(update, Interlocked.Increment(ref tick), serverTimeUnixMs, entries);
        }
        finally
        {
            entries.Clear(); // the ids are the sessions' own arrays
        }

        if (update.ReadableBytes - FrameDecoder.HeaderBytes > maxFrameBytes)
        {
            return false;
        }

        var added = 0;
        try
        {
            foreach (var member in snapshot)
            {
                // A detached session gets nothing (its first update after a resume is a fresh one). Whether the
                // connection is still open, and writable, is the loop's to check when it sends, in order with the
                // close path: here the ticker reads the session only, not the connection's channel (UpdateBatch).
                if (member.Connection is { } connection)
                {
                    batch.Add(connection, update); // shared: the direct write never moves its reader index
                    added++;
                }
            }
        }
        finally
        {
            // One reference per member it was added for, taken at once (one atomic operation per room, not per
            // member): the batch sends nothing before the ticker dispatches it. The room's own stays.
            if (added > 0)
            {
                update.Retain(added);
            }
        }

        return true;
    }

    /// <summary>The last frame emptied for this tick, when nobody else holds it and it is big enough; else a new one.</summary>
    private IByteBuffer NextFrame(IByteBufferAllocator allocator, int bytes)
    {
        if (frame is { ReferenceCount: 1 } last && last.Capacity >= bytes)
        {
            return last.Clear();
        }

        ForgetFrame();

        // Rounded up to a power of two: a room that fills one join at a time does not take a new buffer per join.
        return frame = allocator.HeapBuffer((int)BitOperations.RoundUpToPowerOf2((uint)bytes));
    }

    /// <summary>A tick with no members: the room's frame goes (it is closed for good, or refilled by a new tick).</summary>
    private bool Empty()
    {
        ForgetFrame();
        return true;
    }

    // Forgotten before it is released: should the release throw, no later tick releases it again.
    private void ForgetFrame()
    {
        var last = frame;
        frame = null;
        last?.Release();
    }

    /// <summary>The members at this moment, copied under the lock so the caller can send without holding it.</summary>
    private PlayerSession[] Members()
    {
        lock (members)
        {
            return [.. members];
        }
    }
}
