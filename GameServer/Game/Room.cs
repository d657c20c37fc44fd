using DotNetty.Buffers;
using GameProtocol;
using GameServer.Connection.Codec;

namespace GameServer.Game;

/// <summary>A set of players that see each other. Each tick broadcasts one StateUpdate, encoded once and shared.</summary>
public sealed class Room
{
    private readonly List<PlayerSession> members = [];
    private long tick;

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

    public void Add(PlayerSession player)
    {
        lock (members)
        {
            members.Add(player);
        }
    }

    /// <summary>Removes a player; returns true when the room became empty.</summary>
    public bool Remove(PlayerSession player)
    {
        lock (members)
        {
            members.Remove(player);
            return members.Count == 0;
        }
    }

    /// <summary>Broadcasts the current state; returns how many members were skipped as not writable.</summary>
    public int Tick(long serverTimeUnixMs, IByteBufferAllocator allocator)
    {
        PlayerSession[] snapshot;
        lock (members)
        {
            snapshot = members.ToArray();
        }

        if (snapshot.Length == 0)
        {
            return 0;
        }

        var players = new PlayerState[snapshot.Length];
        for (var i = 0; i < snapshot.Length; i++)
        {
            players[i] = snapshot[i].State;
        }

        var update = MessageCodec.Encode(allocator, new StateUpdate(Interlocked.Increment(ref tick), serverTimeUnixMs, players));
        var skipped = 0;
        try
        {
            foreach (var member in snapshot)
            {
                // A member that is not writable gets the next tick's update instead of a queue of stale ones.
                if (!member.TrySend(update.RetainedDuplicate()))
                {
                    skipped++;
                }
            }
        }
        finally
        {
            update.Release();
        }

        return skipped;
    }
}
