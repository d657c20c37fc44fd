using System.CommandLine;
using System.CommandLine.Help;
using System.Globalization;

namespace LoadTests;

/// <summary>What the command line asked for: settings to run with, or text to print and an exit code.</summary>
/// <param name="Settings">The run's settings; null when the program should exit with <paramref name="ExitCode"/>.</param>
/// <param name="Output">Text for standard output (the help).</param>
/// <param name="Error">One line for standard error saying what was wrong, or null.</param>
/// <param name="Notes">Warnings that do not stop the run (a deprecated alias).</param>
public sealed record LoadCommand(LoadSettings? Settings, int ExitCode, string Output, string? Error, IReadOnlyList<string> Notes);

/// <summary>
/// The suite's command line on System.CommandLine: <c>--opt value</c> and <c>--opt=value</c>, <c>--help</c> listing
/// every option with its default, <c>--config FILE</c>. Each option sets one <see cref="LoadSettings"/> property, and
/// only when given, so a value from the JSON files is not overwritten by an option's default.
/// </summary>
public static class LoadCommandLine
{
    /// <summary>Arguments with these prefixes configure the server the suite starts and are passed to it as they are.</summary>
    public static readonly IReadOnlyList<string> ServerArgPrefixes = ["--Server:", "--Limits:", "--Game:", "--Heartbeat:", "--Session:", "--Connection:"];

    /// <summary>The shipped settings: config/loadtest.json beside the program.</summary>
    public static string ShippedConfig => Path.Combine(AppContext.BaseDirectory, "config", "loadtest.json");

    /// <summary>Which option sets which <see cref="LoadSettings"/> property (the help test checks every property has one).</summary>
    public static IReadOnlyDictionary<string, string> OptionNames => Build(new LoadSettings()).Bindings.ToDictionary(b => b.Property, b => b.Option.Name, StringComparer.Ordinal);

    public static LoadCommand Parse(string[] args, string? shippedConfig = null)
    {
        try
        {
            return ParseCore(args, shippedConfig ?? ShippedConfig);
        }
        catch (ArgumentException ex)
        {
            return new LoadCommand(null, 2, string.Empty, ex.Message, []);
        }
    }

    private static LoadCommand ParseCore(string[] args, string shippedConfig)
    {
        var shipped = File.Exists(shippedConfig) ? new LoadSettings().OverlaidWith(shippedConfig) : new LoadSettings();
        var (serverArgs, rest) = SplitServerArgs(args);
        var misspelt = rest.FirstOrDefault(a => ServerArgPrefixes.Any(p => a.StartsWith(p, StringComparison.OrdinalIgnoreCase)));
        if (misspelt is not null)
        {
            // Otherwise System.CommandLine takes --server:Transport=epoll as --server "Transport=epoll" and complains
            // about a host:port nobody meant.
            var prefix = ServerArgPrefixes.First(p => misspelt.StartsWith(p, StringComparison.OrdinalIgnoreCase));
            return Fail($"{misspelt}: server settings are spelled {prefix}KEY=VALUE (with that capitalisation), e.g. --Server:Transport=epoll");
        }

        var cli = Build(shipped);
        var parse = cli.Root.Parse(rest);
        if (parse.Action is HelpAction || (parse.Errors.Count == 0 && parse.Action is not null)) // --help, --version
        {
            using var output = new StringWriter(CultureInfo.InvariantCulture);
            parse.Invoke(new InvocationConfiguration { Output = output, Error = output });
            return new LoadCommand(null, 0, output.ToString(), null, []);
        }

        if (parse.UnmatchedTokens.Count > 0)
        {
            var token = parse.UnmatchedTokens[0];
            return Fail(token.StartsWith('-') ? $"unknown option {token} (see --help)" : $"unexpected argument '{token}' (see --help)");
        }

        if (parse.Errors.Count > 0)
        {
            return Fail($"{parse.Errors[0].Message} (see --help)");
        }

        var settings = shipped;
        if (parse.GetValue(cli.Config) is { } config)
        {
            if (!File.Exists(config))
            {
                return Fail($"--config: no file '{config}'");
            }

            settings = settings.OverlaidWith(config);
        }

        var serverArgsGiven = settings.ServerArgs.Count + serverArgs.Count > 0; // by a file or the command line, not the --smoke preset
        if (parse.GetValue(cli.Smoke))
        {
            // The short run; options given with it still win.
            settings = settings with
            {
                DurationSeconds = 10, WarmUpSeconds = 1, Copies = 24, ChurnRate = 5, ChaosRate = 2,
                ServerArgs = [.. settings.ServerArgs, "--Heartbeat:IntervalMs=1000"],
            };
        }

        foreach (var binding in cli.Bindings)
        {
            settings = binding.Apply(settings, parse);
        }

        settings = settings with { ServerArgs = [.. settings.ServerArgs, .. serverArgs] };
        var notes = new List<string>();
        if (settings.Server is not null && serverArgsGiven)
        {
            notes.Add($"{string.Join(' ', settings.ServerArgs)}: server settings configure only a server the suite starts; with --server they are not used");
        }
        if (parse.GetResult(cli.Server)?.IdentifierToken?.Value == "--target")
        {
            notes.Add("--target is a deprecated alias of --server (host:port of the server to load); in NBomber --target chooses scenarios, which is --scenario here");
            if (settings.Server is { } server && LoadSettings.ScenarioNames.Contains(server))
            {
                return Fail($"--target {server}: --target is a deprecated alias of --server and takes host:port; to run only the scenario {server}, use --scenario {server}");
            }
        }

        return new LoadCommand(settings.Validated(), 0, string.Empty, null, notes);

        static LoadCommand Fail(string message) => new(null, 2, string.Empty, message, []);
    }

    /// <summary>The server's own configuration arguments (<c>--Server:Port=1</c> or <c>--Server:Port 1</c>) apart from the suite's options.</summary>
    private static (List<string> ServerArgs, string[] Others) SplitServerArgs(string[] args)
    {
        var server = new List<string>();
        var rest = new List<string>();
        for (var i = 0; i < args.Length; i++)
        {
            if (!ServerArgPrefixes.Any(p => args[i].StartsWith(p, StringComparison.Ordinal)))
            {
                rest.Add(args[i]);
            }
            else if (args[i].Contains('=', StringComparison.Ordinal) || i + 1 >= args.Length || args[i + 1].StartsWith("--", StringComparison.Ordinal))
            {
                server.Add(args[i]);
            }
            else
            {
                server.Add($"{args[i]}={args[++i]}");
            }
        }

        return (server, [.. rest]);
    }

    private static Cli Build(LoadSettings d)
    {
        var bindings = new List<Binding>();
        Option<T> Add<T>(string property, Option<T> option, Func<LoadSettings, T, LoadSettings> set)
        {
            bindings.Add(new Binding(property, option, (s, r) => r.GetResult(option) is { Implicit: false } ? set(s, r.GetValue(option)!) : s));
            return option;
        }

        // The value's name in the help is its unit (seconds, ms, n, percent).
        static string Unit(string name) =>
            name.EndsWith("-ms", StringComparison.Ordinal) ? "ms"
            : name.EndsWith("-percent", StringComparison.Ordinal) ? "percent"
            : name is "--duration" or "--warm-up" or "--reporting-interval" or "--clean-deadline" ? "seconds"
            : name.EndsWith("-rate", StringComparison.Ordinal) ? "per-second"
            : "n";
        Option<int> Int(string property, string name, string description, int value, Func<LoadSettings, int, LoadSettings> set) =>
            Add(property, new Option<int>(name) { Description = description, DefaultValueFactory = _ => value, HelpName = Unit(name) }, set);
        Option<double> Double(string property, string name, string description, double value, Func<LoadSettings, double, LoadSettings> set) =>
            Add(property, new Option<double>(name) { Description = description, DefaultValueFactory = _ => value, HelpName = Unit(name), CustomParser = r => ParseDouble(name, r) }, set);

        var server = Add(
            nameof(LoadSettings.Server),
            new Option<string?>("--server", "--target")
            {
                Description = "host:port of the server to load (default: none: the suite starts a GameServer on free ports and writes its log to <report folder>/server.log). --target is a deprecated alias, kept from before; NBomber's --target chooses scenarios, which is --scenario here",
                HelpName = "host:port",
            },
            (s, v) => s with { Server = v });
        Add(
            nameof(LoadSettings.Metrics),
            new Option<string?>("--metrics")
            {
                Description = "Prometheus text endpoint of the server (default: the started server's; with --server and no --metrics, the close-reason, leak and resume checks are skipped)",
                HelpName = "url",
            },
            (s, v) => s with { Metrics = v });
        Add(
            nameof(LoadSettings.Cluster),
            new Option<string?>("--cluster")
            {
                Description = "the run folder of ./run.sh cluster (its --dir): players go through its HAProxy, the checks sum its gateways' counts, and the kill scenario kills its gateways and silos in turn (default: none: one server)",
                HelpName = "folder",
            },
            (s, v) => s with { Cluster = v });
        Add(
            nameof(LoadSettings.Scenarios),
            new Option<string[]>("--scenario")
            {
                Description = $"a scenario to run; repeat the option or give a comma list (default: all: {string.Join(", ", LoadSettings.ScenarioNames)})",
                HelpName = "name",
                AllowMultipleArgumentsPerToken = false,
            },
            (s, v) => s with { Scenarios = [.. v.SelectMany(n => n.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))] });
        Int(nameof(LoadSettings.DurationSeconds), "--duration", "seconds of each scenario's measured load simulations", d.DurationSeconds, (s, v) => s with { DurationSeconds = v });
        Int(nameof(LoadSettings.WarmUpSeconds), "--warm-up", "seconds of play's warm-up: its simulations from their start, unrecorded; then the measured run starts them again", d.WarmUpSeconds, (s, v) => s with { WarmUpSeconds = v });
        Int(nameof(LoadSettings.Copies), "--copies", "players in play (ramped up over the first sixth of the run, then kept)", d.Copies, (s, v) => s with { Copies = v });
        Int(nameof(LoadSettings.RoomSize), "--room-size", "players per room", d.RoomSize, (s, v) => s with { RoomSize = v });
        Int(nameof(LoadSettings.ClientTickMs), "--tick-ms", "each player's pause between invocations (Move + Echo), ms", d.ClientTickMs, (s, v) => s with { ClientTickMs = v });
        Int(nameof(LoadSettings.ChurnRate), "--churn-rate", "churn sessions started per second", d.ChurnRate, (s, v) => s with { ChurnRate = v });
        Int(nameof(LoadSettings.ChaosRate), "--chaos-rate", "chaos victims per second", d.ChaosRate, (s, v) => s with { ChaosRate = v });
        Int(nameof(LoadSettings.ChaosBotConnections), "--chaos-bot-connections", "connections each chaos bot process holds (all end with the process)", d.ChaosBotConnections, (s, v) => s with { ChaosBotConnections = v });
        Int(nameof(LoadSettings.ResumeRate), "--resume-rate", "resume victims per second (0: none)", d.ResumeRate, (s, v) => s with { ResumeRate = v });
        Int(nameof(LoadSettings.KillIntervalSeconds), "--kill-interval", "seconds between two kills of the kill scenario (--cluster only)", d.KillIntervalSeconds, (s, v) => s with { KillIntervalSeconds = v });
        Double(nameof(LoadSettings.MaxFailPercent), "--max-fail-percent", "threshold: every scenario's invocation fail rate is at most this, in % (0: no failure allowed)", d.MaxFailPercent, (s, v) => s with { MaxFailPercent = v });
        Double(nameof(LoadSettings.MaxEchoP99Ms), "--max-echo-p99-ms", "threshold: play's Echo round trip p99 is at most this, ms", d.MaxEchoP99Ms, (s, v) => s with { MaxEchoP99Ms = v });
        Double(nameof(LoadSettings.MaxStateUpdateP99Ms), "--max-state-update-p99-ms", "threshold: play's StateUpdate lateness p99 (server time in the update to when the player read it) is at most this, ms", d.MaxStateUpdateP99Ms, (s, v) => s with { MaxStateUpdateP99Ms = v });
        Double(nameof(LoadSettings.MaxConnectP99Ms), "--max-connect-p99-ms", "threshold: connect time p99 (TCP, Hello, Welcome) of players that connected during the measured run is at most this, ms", d.MaxConnectP99Ms, (s, v) => s with { MaxConnectP99Ms = v });
        Double(nameof(LoadSettings.MaxGeneratorLagMs), "--max-generator-lag-ms", "the run fails as 'the load generator was the bottleneck' when its own 20 ms timer ran later than this at p99, ms", d.MaxGeneratorLagMs, (s, v) => s with { MaxGeneratorLagMs = v });
        Int(nameof(LoadSettings.ReportingIntervalSeconds), "--reporting-interval", "seconds between threshold checks during the run (NBomber's ReportingInterval); they are checked once more at the end", d.ReportingIntervalSeconds, (s, v) => s with { ReportingIntervalSeconds = v });
        Int(nameof(LoadSettings.AbortWhenErrorCount), "--abort-when-error-count", "stop the run early, failed, once a threshold was broken at this many checks (NBomber's abortWhenErrorCount; 0: never stop early)", d.AbortWhenErrorCount, (s, v) => s with { AbortWhenErrorCount = v });
        Int(nameof(LoadSettings.CleanConcurrency), "--clean-concurrency", "Goodbye handshakes play's clean step runs at once", d.CleanConcurrency, (s, v) => s with { CleanConcurrency = v });
        Int(nameof(LoadSettings.CleanDeadlineSeconds), "--clean-deadline", "seconds the clean step waits for every player's Goodbye; what is unfinished then is reported (and fails the run)", d.CleanDeadlineSeconds, (s, v) => s with { CleanDeadlineSeconds = v });
        Add(
            nameof(LoadSettings.ReportFolder),
            new Option<string>("--report-folder") { Description = "where reports go (a folder per run, named by its UTC start and this process's id)", DefaultValueFactory = _ => d.ReportFolder, HelpName = "dir" },
            (s, v) => s with { ReportFolder = v });
        Add(
            nameof(LoadSettings.ClientTransport),
            new Option<string>("--client-transport") { Description = "the suite's own connections and bot victims: auto (epoll on Linux), sockets or epoll", DefaultValueFactory = _ => d.ClientTransport, HelpName = "auto|sockets|epoll" },
            (s, v) => s with { ClientTransport = v });
        bindings.Add(new Binding(nameof(LoadSettings.ServerArgs), ServerArgsHelp, (s, _) => s));

        var config = new Option<string?>("--config", "-c")
        {
            Description = "a JSON file of settings, keys as in config/loadtest.json (default: none; config/loadtest.json beside the program is always read first, this file then, options last)",
            HelpName = "file",
        };
        var smoke = new Option<bool>("--smoke")
        {
            Description = "the short run: 10 s, 1 s warm-up, 24 players, churn 5/s, chaos 2/s, the started server's heartbeat at 1 s; other options still win (default: off)",
        };
        var root = new RootCommand(
            "The game server's load suite, in NBomber's vocabulary: scenarios play, churn, chaos and resume against one server, thresholds checked "
            + "during the run, the server's close reasons compared with what the victims' modes predict, and reports (md, txt, json, csv, html). "
            + "Settings: config/loadtest.json beside the program, then --config FILE, then options (an option wins). Options take --opt value or "
            + "--opt=value. Arguments --Server:KEY=VALUE, --Limits:…, --Game:…, --Heartbeat:…, --Session:…, --Connection:… (ServerArgs, default: none) "
            + "configure the server the suite starts. Exit code 0: every threshold and check held; 1: one did not; 2: bad input, or a server unreachable before the load starts.");
        root.Options.Add(ServerArgsHelp);
        foreach (var binding in bindings.Where(b => b.Option != ServerArgsHelp))
        {
            root.Options.Add(binding.Option);
        }

        root.Options.Add(config);
        root.Options.Add(smoke);
        foreach (var help in root.Options.OfType<HelpOption>())
        {
            if (help.Action is HelpAction action)
            {
                action.MaxWidth = 120; // the same layout on a terminal, in a pipe and in the tests
            }
        }

        return new Cli(root, bindings, server, config, smoke);
    }

    /// <summary>
    /// A number with a dot for decimals, whatever the machine's culture: the default parser reads "1,5" as 15 in an
    /// English culture (a thousands separator), turning a bound into ten times itself without a word.
    /// </summary>
    private static double ParseDouble(string name, System.CommandLine.Parsing.ArgumentResult result)
    {
        var token = result.Tokens.Count == 1 ? result.Tokens[0].Value : string.Join(' ', result.Tokens.Select(t => t.Value));
        if (double.TryParse(token, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) && double.IsFinite(value))
        {
            return value;
        }

        result.AddError($"{name}: '{token}' is not a number (write decimals with a dot, e.g. 1.5)");
        return 0;
    }

    /// <summary>Only for the help: the server's own arguments are taken apart before parsing (they are not options of the suite).</summary>
    private static readonly Option<bool> ServerArgsHelp = new("--Server:KEY=VALUE")
    {
        Description = "passed to the server the suite starts, as are --Limits:…, --Game:…, --Heartbeat:…, --Session:…, --Connection:… (e.g. --Server:Transport=epoll; default: none)",
    };

    private sealed record Binding(string Property, Option Option, Func<LoadSettings, ParseResult, LoadSettings> Apply);

    private sealed record Cli(RootCommand Root, IReadOnlyList<Binding> Bindings, Option<string?> Server, Option<string?> Config, Option<bool> Smoke);
}
