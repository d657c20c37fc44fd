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
    /// nothing was added.
    /// </summary>
    public bool Tick(long serverTimeUnixMs, IByteBufferAllocator allocator, int maxFrameBytes, UpdateBatch batch)
    {
        var snapshot = Members();
        if (snapshot.Length == 0)
        {
            return true;
        }

        var entries = new StateUpdateFrame.Entry[snapshot.Length];
        for (var i = 0; i < snapshot.Length; i++)
        {
            var state = snapshot[i].State;
            entries[i] = new StateUpdateFrame.Entry(snapshot[i].EncodedSessionId, state.X, state.Y, state.LastSeq);
        }

        // A whole frame (header included): most go straight to their sockets (UpdateBatch).
        var update = StateUpdateFrame.Encode(allocator, Interlocked.Increment(ref tick), serverTimeUnixMs, entries);
        if (update.ReadableBytes - FrameDecoder.HeaderBytes > maxFrameBytes)
        {
            update.Release();
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
            // member): the allocation's own is the first, and the batch sends nothing before the ticker dispatches it.
            if (added == 0)
            {
                update.Release();
            }
            else if (added > 1)
            {
                update.Retain(added - 1);
            }
        }

        return true;
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
