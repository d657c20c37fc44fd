using System.Net;
using TcpConnections;

namespace GameServer.Options;

/// <summary>
/// Whether this process is the whole game (<c>none</c>, the default) or one part of an Orleans cluster, and which part.
/// Section <c>Cluster</c>. A gateway runs the TCP front (the connection pipeline, close handling, heartbeat, limits)
/// and holds no game state; a silo hosts the session and room grains. Both find each other through Redis, which also
/// keeps the grains' state.
/// </summary>
public sealed class ClusterModeOptions : IValidatedOptions
{
    public const string Section = "Cluster";

    public const string ModeNone = "none";
    public const string ModeOrleans = "orleans";
    public const string RoleGateway = "gateway";
    public const string RoleSilo = "silo";

    /// <summary><c>none</c>: one process is the game. <c>orleans</c>: this process is a gateway or a silo (<see cref="Role"/>).</summary>
    public string Mode { get; set; } = ModeNone;

    /// <summary><c>gateway</c> (players connect here) or <c>silo</c> (grains live here); read only in cluster mode.</summary>
    public string Role { get; set; } = RoleGateway;

    /// <summary>Redis, as StackExchange.Redis reads it (<c>host:port</c>): cluster membership and grain state.</summary>
    public string Redis { get; set; } = "127.0.0.1:6379";

    /// <summary>Orleans' cluster id: processes with the same id form one cluster.</summary>
    public string ClusterId { get; set; } = "gameserver";

    /// <summary>Orleans' service id: grain state is keyed by it, so it stays the same across deployments.</summary>
    public string ServiceId { get; set; } = "gameserver";

    /// <summary>A silo's port for other silos.</summary>
    public int SiloPort { get; set; } = 11111;

    /// <summary>A silo's port for gateways (Orleans clients).</summary>
    public int ClientPort { get; set; } = 30000;

    /// <summary>The address a silo advertises to the others and to gateways.</summary>
    public string AdvertisedAddress { get; set; } = "127.0.0.1";

    /// <summary>
    /// This gateway's name in connection keys and logs; empty means the host name and the game port. Two gateways
    /// must not share one.
    /// </summary>
    public string GatewayId { get; set; } = string.Empty;

    /// <summary>
    /// How long a gateway keeps retrying a grain call (a silo died and its grains are moving) before it gives the
    /// connection up. Players see a pause for as long as this, not an error.
    /// </summary>
    public int GrainCallTimeoutMs { get; set; } = 30_000;

    /// <summary>
    /// How long one call between cluster parts may take before it fails (Orleans' response timeout, 30 s by default).
    /// A call in flight to a silo that died fails only by this, so it bounds the pause a player sees before the
    /// gateway retries on the grain's new home.
    /// </summary>
    public int ResponseTimeoutMs { get; set; } = 5_000;

    /// <summary>
    /// How long a silo waits for another's answer to a liveness probe (Orleans' ProbeTimeout, 5 s by default). A silo
    /// that misses <see cref="MissedProbesLimit"/> in a row is declared dead and its grains move.
    /// </summary>
    public int ProbeTimeoutMs { get; set; } = 1_000;

    /// <summary>Probes in a row a silo may miss before it is declared dead.</summary>
    public int MissedProbesLimit { get; set; } = 3;

    /// <summary>How often a session grain asks its gateway whether the connection that carries it is still there.</summary>
    public int RouteCheckMs { get; set; } = 5_000;

    /// <summary>How long a session grain waits for the client's acknowledgement before it pushes unacknowledged messages again.</summary>
    public int RetransmitMs { get; set; } = 1_000;

    /// <summary>How often a room grain saves its members' positions (membership is saved at once when it changes).</summary>
    public int RoomSaveIntervalMs { get; set; } = 1_000;

    public bool Enabled => Mode == ModeOrleans;

    public bool IsGateway => Enabled && Role == RoleGateway;

    public bool IsSilo => Enabled && Role == RoleSilo;

    public IEnumerable<string> Validate()
    {
        if (Mode is not (ModeNone or ModeOrleans))
        {
            yield return OptionErrors.Invalid(Section, nameof(Mode), Mode, $"'{ModeNone}' or '{ModeOrleans}'");
        }

        if (Role is not (RoleGateway or RoleSilo))
        {
            yield return OptionErrors.Invalid(Section, nameof(Role), Role, $"'{RoleGateway}' or '{RoleSilo}'");
        }

        if (Enabled && string.IsNullOrWhiteSpace(Redis))
        {
            yield return OptionErrors.Invalid(Section, nameof(Redis), Redis, "a Redis address such as 127.0.0.1:6379");
        }

        if (string.IsNullOrWhiteSpace(ClusterId) || string.IsNullOrWhiteSpace(ServiceId))
        {
            yield return OptionErrors.Invalid(Section, nameof(ClusterId), $"{ClusterId}/{ServiceId}", "a ClusterId and a ServiceId that are not empty");
        }

        if (!IPAddress.TryParse(AdvertisedAddress, out _))
        {
            yield return OptionErrors.Invalid(Section, nameof(AdvertisedAddress), AdvertisedAddress, "an IP address");
        }

        if (GatewayId.Contains('/', StringComparison.Ordinal))
        {
            yield return OptionErrors.Invalid(Section, nameof(GatewayId), GatewayId, "a name without '/'");
        }

        foreach (var error in OptionErrors.Range(Section, nameof(SiloPort), SiloPort, 1, 65535)
            .Concat(OptionErrors.Range(Section, nameof(ClientPort), ClientPort, 1, 65535))
            .Concat(OptionErrors.Range(Section, nameof(GrainCallTimeoutMs), GrainCallTimeoutMs, 100, 600_000))
            .Concat(OptionErrors.Range(Section, nameof(RouteCheckMs), RouteCheckMs, 100, 600_000))
            .Concat(OptionErrors.Range(Section, nameof(ResponseTimeoutMs), ResponseTimeoutMs, 100, 600_000))
            .Concat(OptionErrors.Range(Section, nameof(ProbeTimeoutMs), ProbeTimeoutMs, 100, 60_000))
            .Concat(OptionErrors.Range(Section, nameof(MissedProbesLimit), MissedProbesLimit, 1, 10))
            .Concat(OptionErrors.Range(Section, nameof(RetransmitMs), RetransmitMs, 10, 600_000))
            .Concat(OptionErrors.Range(Section, nameof(RoomSaveIntervalMs), RoomSaveIntervalMs, 10, 600_000)))
        {
            yield return error;
        }
    }
}
