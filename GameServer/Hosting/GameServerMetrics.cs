using System.Diagnostics.Metrics;
using TcpConnections;

namespace GameServer.Hosting;

/// <summary>The <c>GameServer</c> meter: connection instruments plus the game's own.</summary>
public sealed class GameServerMetrics
{
    public const string MeterName = "GameServer";

    private readonly Counter<long> coalescedUpdates;

    public GameServerMetrics(IMeterFactory meterFactory)
    {
        Meter = meterFactory.Create(MeterName);
        Connections = new ConnectionMetrics(Meter);
        coalescedUpdates = Meter.CreateCounter<long>(
            "gameserver.state_updates.coalesced",
            description: "StateUpdates not sent because the client was not writable; it gets the next tick's instead.");
    }

    public Meter Meter { get; }

    public ConnectionMetrics Connections { get; }

    public void UpdatesCoalesced(int count)
    {
        if (count > 0)
        {
            coalescedUpdates.Add(count);
        }
    }
}
