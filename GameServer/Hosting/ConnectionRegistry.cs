using System.Collections.Concurrent;
using GameServer.Connection;

namespace GameServer.Hosting;

/// <summary>The open connections, so that shutdown can say Goodbye to each and operators (and tests) can find one.</summary>
public sealed class ConnectionRegistry
{
    private readonly ConcurrentDictionary<string, ConnectionState> connections = new();

    public int Count => connections.Count;

    public void Add(ConnectionState state) => connections[state.Id] = state;

    public void Remove(ConnectionState state) => connections.TryRemove(state.Id, out _);

    public IReadOnlyCollection<ConnectionState> Snapshot() => connections.Values.ToArray();

    /// <summary>Finds the server side of a connection by the peer's address as the peer sees its own local end.</summary>
    public ConnectionState? FindByRemote(System.Net.EndPoint? peerLocalEndPoint)
    {
        var wanted = ConnectionState.FormatEndPoint(peerLocalEndPoint);
        return connections.Values.FirstOrDefault(c => c.RemoteEndPoint == wanted);
    }
}
