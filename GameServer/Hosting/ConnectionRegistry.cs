using System.Collections.Concurrent;
using TcpConnections;

namespace GameServer.Hosting;

/// <summary>The open connections, so that shutdown can say Goodbye to each and operators (and tests) can find one.</summary>
public sealed class ConnectionRegistry
{
    private readonly ConcurrentDictionary<string, TcpConnection> connections = new();

    public int Count => connections.Count;

    public void Add(TcpConnection state) => connections[state.Id] = state;

    public void Remove(TcpConnection state) => connections.TryRemove(state.Id, out _);

    public IReadOnlyCollection<TcpConnection> Snapshot() => connections.Values.ToArray();

    /// <summary>Finds the server side of a connection by the peer's address as the peer sees its own local end.</summary>
    public TcpConnection? FindByRemote(System.Net.EndPoint? peerLocalEndPoint)
    {
        var wanted = TcpConnection.FormatEndPoint(peerLocalEndPoint);
        return connections.Values.FirstOrDefault(c => c.RemoteEndPoint == wanted);
    }
}
