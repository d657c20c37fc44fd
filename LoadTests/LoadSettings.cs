using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using LoadTests.Harness;

namespace LoadTests;

/// <summary>
/// Every setting of a run. Defaults here, then <c>config/loadtest.json</c> beside the program, then a file given with
/// <c>--config</c>, then the command line (<see cref="LoadCommandLine"/>): each later source wins for the keys it sets.
/// Every property is an option on the command line and a key in the JSON files.
/// </summary>
public sealed record LoadSettings
{
    /// <summary>host:port of the server to load; null: the suite starts a GameServer of its own.</summary>
    public string? Server { get; init; }

    public string? Metrics { get; init; }

    /// <summary>
    /// The run folder of <c>./run.sh cluster</c>: players go through its HAProxy, the server's counts are the sum over
    /// its gateways, and the <c>kill</c> scenario kills its parts. Null: one server (<see cref="Server"/>).
    /// </summary>
    public string? Cluster { get; init; }

    /// <summary>Seconds between two kills of the <c>kill</c> scenario (each waits for the cluster to be whole again).</summary>
    public int KillIntervalSeconds { get; init; } = 10;

    /// <summary>Scenarios to run (NBomber's target scenarios); empty: all of them.</summary>
    public IReadOnlyList<string> Scenarios { get; init; } = [];

    public int DurationSeconds { get; init; } = 60;

    public int WarmUpSeconds { get; init; } = 3;

    public int Copies { get; init; } = 200;

    public int RoomSize { get; init; } = 8;

    public int ClientTickMs { get; init; } = 50;

    public int ChurnRate { get; init; } = 20;

    /// <summary>Victims per second in the chaos scenario.</summary>
    public int ChaosRate { get; init; } = 2;

    /// <summary>Resume victims per second: version 2 sessions dropped mid-stream (RST, FIN, a silently abandoned socket) that resume.</summary>
    public int ResumeRate { get; init; } = 1;

    /// <summary>Connections each bot victim process holds (exit-without-close and SIGKILL end them all at once).</summary>
    public int ChaosBotConnections { get; init; } = 4;

    /// <summary>Bound on every scenario's invocation fail rate, in percent; 0 allows no failure at all.</summary>
    public double MaxFailPercent { get; init; } = 1;

    public double MaxEchoP99Ms { get; init; } = 250;

    /// <summary>Bound on <c>play</c>'s StateUpdate lateness p99 (from the update's serverTime to when the client read it).</summary>
    public double MaxStateUpdateP99Ms { get; init; } = 250;

    /// <summary>Bound on the connect time p99 (TCP connect, Hello and Welcome) of players that connected during the measured run.</summary>
    public double MaxConnectP99Ms { get; init; } = 1000;

    /// <summary>Above this lateness p99 of its own timer, the generator itself was the bottleneck and the run fails saying so.</summary>
    public double MaxGeneratorLagMs { get; init; } = 50;

    /// <summary>How often the thresholds are checked during the run (NBomber's ReportingInterval).</summary>
    public int ReportingIntervalSeconds { get; init; } = 10;

    /// <summary>Broken checks after which a threshold stops the run early (NBomber's abortWhenErrorCount); 0: never.</summary>
    public int AbortWhenErrorCount { get; init; }

    /// <summary>Goodbye handshakes the clean step runs at once.</summary>
    public int CleanConcurrency { get; init; } = ClientPool<object>.DefaultCleanConcurrency;

    /// <summary>How long the clean step waits for every player to finish its Goodbye.</summary>
    public int CleanDeadlineSeconds { get; init; } = (int)ClientPool<object>.DefaultCleanDeadline.TotalSeconds;

    public string ReportFolder { get; init; } = "load-reports";

    /// <summary>The suite's own connections and bot victims: <c>auto</c> (epoll on Linux), <c>sockets</c> or <c>epoll</c>.</summary>
    public string ClientTransport { get; init; } = "auto";

    /// <summary>Configuration arguments (<c>--Server:Port=…</c> and the like) for the server the suite starts.</summary>
    public IReadOnlyList<string> ServerArgs { get; init; } = [];

    /// <summary>About the most players this suite reads at 20 Hz on a 2-core machine it shares with the server.</summary>
    public const int PlayersOneSuiteReads = 2000;

    /// <summary>Connections one process may hold here (open files cap 20,000, some kept for the runtime).</summary>
    public const int MaxCopies = 19_000;

    /// <summary>The scenarios this suite ships, in the order they are registered.</summary>
    public static IReadOnlyList<string> ScenarioNames { get; } = ["play", "churn", "chaos", "resume", "kill"];

    /// <summary>The scenarios a run registers: the chosen ones, or all (<c>kill</c> only against a cluster).</summary>
    [JsonIgnore]
    public IReadOnlyList<string> SelectedScenarios => Scenarios.Count == 0
        ? ScenarioNames.Where(s => s != "kill" || Cluster is not null).ToList()
        : ScenarioNames.Where(Scenarios.Contains).ToList();

    /// <summary>The bound on every scenario's invocation fail rate: at most, so 0 passes a run without failures.</summary>
    public Threshold FailRateThreshold() =>
        Threshold.Create(s => s.FailPercent <= MaxFailPercent, AbortAfter, description: $"fail rate at most {MaxFailPercent} %");

    /// <summary>The bounds on <c>play</c>'s steps.</summary>
    public Threshold[] PlayThresholds() =>
    [
        Threshold.Create("echo", s => s.P99Ms <= MaxEchoP99Ms, AbortAfter, description: $"echo p99 at most {MaxEchoP99Ms} ms"),
        Threshold.Create("state_update", s => s.P99Ms <= MaxStateUpdateP99Ms, AbortAfter, description: $"StateUpdate lateness p99 at most {MaxStateUpdateP99Ms} ms"),
        Threshold.Create("connect", s => s.P99Ms <= MaxConnectP99Ms, AbortAfter, description: $"connect p99 at most {MaxConnectP99Ms} ms"),
    ];

    private int? AbortAfter => AbortWhenErrorCount > 0 ? AbortWhenErrorCount : null;

    /// <summary>The settings a JSON file may set to null.</summary>
    private static readonly HashSet<string> Nullable = new(StringComparer.Ordinal) { nameof(Server), nameof(Metrics), nameof(Cluster) };

    private static readonly JsonSerializerOptions Json = new()
    {
        PropertyNameCaseInsensitive = true,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        ReadCommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
    };

    /// <summary>
    /// These settings with the keys <paramref name="file"/> sets replaced (keys not in it keep their value). An unknown
    /// key is an error, not ignored: a misspelt bound would otherwise silently keep its default.
    /// </summary>
    public LoadSettings OverlaidWith(string file)
    {
        string text;
        try
        {
            text = File.ReadAllText(file);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new ArgumentException($"cannot read the settings file '{file}': {ex.Message}", ex);
        }

        JsonNode? node;
        try
        {
            node = JsonNode.Parse(text, documentOptions: new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
        }
        catch (JsonException ex)
        {
            throw new ArgumentException($"{file} is not valid JSON: {ex.Message}", ex);
        }

        if (node is not JsonObject overrides)
        {
            throw new ArgumentException($"{file} must hold one JSON object of settings, as config/loadtest.json does");
        }

        var merged = JsonSerializer.SerializeToNode(this, Json)!.AsObject();
        foreach (var (key, value) in overrides)
        {
            // "Target" was this setting's name before it became "Server" (NBomber's --target chooses scenarios).
            var wanted = key.Equals("Target", StringComparison.OrdinalIgnoreCase) ? nameof(Server) : key;
            var known = merged.Select(p => p.Key).FirstOrDefault(k => k.Equals(wanted, StringComparison.OrdinalIgnoreCase))
                ?? throw new ArgumentException($"{file}: unknown setting '{key}' (settings: {string.Join(", ", merged.Select(p => p.Key))})");

            // null is a value only where "none" means something (Server: start one; Metrics: skip its checks);
            // elsewhere it would reach the run as a null list and fail there, far from the file that said it.
            if ((value is null && !Nullable.Contains(known)) || (value is JsonArray items && items.Any(i => i is null)))
            {
                throw new ArgumentException($"{file}: '{key}' must not be null{(value is null ? string.Empty : " inside its list")}: give a value, or leave the key out for the default");
            }
            merged[known] = value?.DeepClone();
        }

        try
        {
            return merged.Deserialize<LoadSettings>(Json)!;
        }
        catch (JsonException ex)
        {
            throw new ArgumentException($"{file}: {ex.Message}", ex);
        }
    }

    /// <summary>These settings, or an <see cref="ArgumentException"/> naming the first bad one by its option.</summary>
    public LoadSettings Validated()
    {
        static void Require(bool holds, string message)
        {
            if (!holds)
            {
                throw new ArgumentException(message);
            }
        }

        Require(DurationSeconds >= 1, "--duration must be at least 1 second");
        Require(WarmUpSeconds >= 0, "--warm-up must not be negative");
        Require(Copies >= 0, "--copies must not be negative");
        Require(
            Copies <= MaxCopies,
            $"--copies {Copies}: one process holds at most {MaxCopies} connections here (open files: 20,000 per process); for more players, "
            + "run several load processes with --server against one server, or measure with the native client (./run.sh bench fanout)");
        Require(CleanConcurrency >= 1, "--clean-concurrency must be at least 1");
        Require(CleanDeadlineSeconds >= 1, "--clean-deadline must be at least 1 second");
        Require(RoomSize >= 1, "--room-size must be at least 1");
        Require(ClientTickMs >= 1, "--tick-ms must be at least 1");
        Require(ChurnRate >= 0 && ChaosRate >= 0 && ResumeRate >= 0, "rates must not be negative");
        Require(ChaosBotConnections is >= 1 and <= 10_000, "--chaos-bot-connections must be between 1 and 10000");
        Require(MaxFailPercent is >= 0 and <= 100, "--max-fail-percent must be between 0 and 100");
        Require(MaxEchoP99Ms > 0 && MaxStateUpdateP99Ms > 0 && MaxConnectP99Ms > 0 && MaxGeneratorLagMs > 0, "latency bounds must be positive");
        Require(ReportingIntervalSeconds >= 1, "--reporting-interval must be at least 1 second");
        Require(AbortWhenErrorCount >= 0, "--abort-when-error-count must not be negative (0: never abort)");
        Require(Server is null || TryParseServer(Server, out _, out _), $"--server must be host:port, not '{Server}'");
        Require(ClientTransport is "auto" or "sockets" or "epoll", $"--client-transport must be auto, sockets or epoll, not '{ClientTransport}'");
        Require(Metrics is null || Uri.IsWellFormedUriString(Metrics, UriKind.Absolute), $"--metrics must be an absolute URL, not '{Metrics}'");
        Require(!string.IsNullOrWhiteSpace(ReportFolder), "--report-folder must not be empty");
        Require(
            Cluster is null || File.Exists(ClusterEnvFile(Cluster)),
            $"--cluster {Cluster}: no {ClusterEnvFile(Cluster ?? ".")} there; give the run folder ./run.sh cluster printed (its --dir)");
        Require(Cluster is null || (Server is null && Metrics is null), "--cluster finds the players' port and the gateways' metrics itself: leave --server and --metrics out");
        Require(Cluster is not null || !Scenarios.Contains("kill"), "--scenario kill kills a cluster's parts: it needs --cluster");
        Require(KillIntervalSeconds >= 1, "--kill-interval must be at least 1 second");
        var unknown = Scenarios.FirstOrDefault(s => !ScenarioNames.Contains(s));
        Require(unknown is null, $"--scenario: unknown scenario '{unknown}' (scenarios: {string.Join(", ", ScenarioNames)})");
        return this;
    }

    private static string ClusterEnvFile(string folder) => LoadTests.Scenarios.ClusterTarget.EnvFile(folder);

    public static bool TryParseServer(string server, out string host, out int port)
    {
        var colon = server.LastIndexOf(':');
        host = colon > 0 ? server[..colon] : string.Empty;
        port = 0;
        return colon > 0 && int.TryParse(server[(colon + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out port) && port is > 0 and < 65536;
    }
}
