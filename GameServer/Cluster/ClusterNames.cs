namespace GameServer.Cluster;

/// <summary>Names the silos and gateways must agree on.</summary>
public static class ClusterNames
{
    /// <summary>The grain storage provider (Redis) that sessions and rooms are saved in.</summary>
    public const string Storage = "game";

    /// <summary>
    /// Why a session was dropped when its gateway stopped answering for its connection (the gateway died): resumable,
    /// like a reset, because the client is alive and will come back through another gateway.
    /// </summary>
    public const string GatewayLost = "gateway_lost";
}
