using System.Reflection;
using System.Text.RegularExpressions;
using GameServer.Tests.Infrastructure;
using LoadTests;

namespace GameServer.Tests;

/// <summary>The load suite's command line: every setting an option, both option forms, the config files' precedence, scenario choice.</summary>
public sealed class LoadCommandLineTests : IDisposable
{
    private readonly string folder = Path.Combine(Path.GetTempPath(), $"load-cli-{Guid.NewGuid():N}");

    public LoadCommandLineTests() => Directory.CreateDirectory(folder);

    /// <summary>No shipped file: the defaults are the settings' own.</summary>
    private string NoShippedConfig => Path.Combine(folder, "absent.json");

    public void Dispose() => Directory.Delete(folder, recursive: true);

    [Fact]
    public void Help_ListsAnOptionForEverySetting_EachWithItsDefault()
    {
        var command = LoadCommandLine.Parse(["--help"], NoShippedConfig);

        Assert.Equal(0, command.ExitCode);
        Assert.Null(command.Settings);
        var settings = typeof(LoadSettings).GetProperties(BindingFlags.Public | BindingFlags.Instance).Where(p => p.CanWrite).Select(p => p.Name).ToList();
        Assert.Contains(nameof(LoadSettings.MaxFailPercent), settings); // the reflection sees the settings at all
        foreach (var property in settings)
        {
            Assert.True(LoadCommandLine.OptionNames.TryGetValue(property, out var option), $"LoadSettings.{property} has no command-line option");
            Assert.Contains(option, command.Output, StringComparison.Ordinal);
        }

        var entries = HelpEntries(command.Output);
        foreach (var (name, text) in entries.Where(e => !e.Name.Contains("--help", StringComparison.Ordinal) && !e.Name.Contains("--version", StringComparison.Ordinal)))
        {
            Assert.True(text.Contains("default", StringComparison.Ordinal), $"the help of {name} does not say its default: {text}");
        }

        Assert.Contains("[default: 60]", entries.Single(e => e.Name.StartsWith("--duration ", StringComparison.Ordinal)).Text, StringComparison.Ordinal);
        Assert.Contains("[default: 1]", entries.Single(e => e.Name.StartsWith("--max-fail-percent ", StringComparison.Ordinal)).Text, StringComparison.Ordinal);
        Assert.Contains("play, churn, chaos, resume", entries.Single(e => e.Name.StartsWith("--scenario ", StringComparison.Ordinal)).Text, StringComparison.Ordinal);
        Assert.Contains("deprecated", entries.Single(e => e.Name.StartsWith("--server, --target ", StringComparison.Ordinal)).Text, StringComparison.Ordinal);
    }

    [Fact]
    public void Help_ShowsTheShippedConfigsValues_AsTheDefaults()
    {
        var shipped = Write("shipped.json", """{ "DurationSeconds": 42 }""");

        var command = LoadCommandLine.Parse(["--help"], shipped);

        Assert.Contains("[default: 42]", HelpEntries(command.Output).Single(e => e.Name.StartsWith("--duration ", StringComparison.Ordinal)).Text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task HelpOfTheProgram_ExitsZero_AndIsNotAnError()
    {
        using var load = BotProcess.StartIn(null, BotProcess.BuiltDll("LoadTests", "LoadTests.dll"), "--help");
        var exit = await load.WaitExitAsync(TimeSpan.FromMinutes(1));

        Assert.Equal(0, exit);
        Assert.Contains("--server, --target <host:port>", load.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("unknown option", load.Output, StringComparison.Ordinal);
    }

    [Fact]
    public void Options_TakeTheirValueWithEqualsOrAsTheNextArgument()
    {
        var settings = Parse("--duration=7", "--copies", "9", "--max-fail-percent=0", "--server=10.0.0.5:7777");

        Assert.Equal(7, settings.DurationSeconds);
        Assert.Equal(9, settings.Copies);
        Assert.Equal(0, settings.MaxFailPercent);
        Assert.Equal("10.0.0.5:7777", settings.Server);
    }

    [Fact]
    public void ConfigFile_OverridesTheShippedFile_AndOptionsOverrideTheConfigFile()
    {
        var shipped = Write("shipped.json", """{ "Copies": 11, "RoomSize": 3, "ChurnRate": 1 }""");
        var config = Write("mine.json", """{ "copies": 22, "ChurnRate": 4, /* comments are fine */ "Scenarios": ["play"] }""");

        var command = LoadCommandLine.Parse(["--config", config, "--churn-rate=5"], shipped);

        var settings = Assert.IsType<LoadSettings>(command.Settings);
        Assert.Equal(22, settings.Copies); // the config file over the shipped one
        Assert.Equal(3, settings.RoomSize); // the shipped file's value where the config file says nothing
        Assert.Equal(5, settings.ChurnRate); // the option over both
        Assert.Equal(60, settings.DurationSeconds); // the default where nobody says anything
        Assert.Equal(["play"], settings.SelectedScenarios);
    }

    [Fact]
    public void ConfigFile_WithAnUnknownKey_IsRefusedNamingTheKey()
    {
        var config = Write("typo.json", """{ "MaxFailPercnet": 0 }""");

        var command = LoadCommandLine.Parse(["-c", config], NoShippedConfig);

        Assert.Equal(2, command.ExitCode);
        Assert.Null(command.Settings);
        Assert.Contains("unknown setting 'MaxFailPercnet'", command.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void ConfigFile_ThatIsMissing_IsOneErrorLine()
    {
        var command = LoadCommandLine.Parse(["--config", Path.Combine(folder, "nowhere.json")], NoShippedConfig);

        Assert.Equal(2, command.ExitCode);
        Assert.StartsWith("--config: no file", command.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void Scenario_IsRepeatable_OrACommaList_AndRunsInTheSuitesOrder()
    {
        var settings = Parse("--scenario", "resume,churn", "--scenario", "play");

        Assert.Equal(["resume", "churn", "play"], settings.Scenarios);
        Assert.Equal(["play", "churn", "resume"], settings.SelectedScenarios);
        Assert.Equal(["play", "churn", "chaos", "resume"], Parse().SelectedScenarios); // none chosen: all
    }

    [Fact]
    public void UnknownScenario_IsOneClearErrorLine_ListingTheValidNames()
    {
        var command = LoadCommandLine.Parse(["--scenario", "play,nope"], NoShippedConfig);

        Assert.Equal(2, command.ExitCode);
        Assert.Equal("--scenario: unknown scenario 'nope' (scenarios: play, churn, chaos, resume, kill)", command.Error);
    }

    [Fact]
    public void Target_IsADeprecatedAliasOfServer()
    {
        var command = LoadCommandLine.Parse(["--target", "10.0.0.5:7777"], NoShippedConfig);

        Assert.Equal("10.0.0.5:7777", command.Settings?.Server);
        Assert.Contains(command.Notes, n => n.StartsWith("--target is a deprecated alias of --server", StringComparison.Ordinal));
    }

    [Fact]
    public void Target_GivenAScenarioName_AsNBomberUsesIt_SaysToUseScenario()
    {
        var command = LoadCommandLine.Parse(["--target", "churn"], NoShippedConfig);

        Assert.Equal(2, command.ExitCode);
        Assert.Contains("use --scenario churn", command.Error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--copies=abc", "Cannot parse argument 'abc' for option '--copies'")]
    [InlineData("--frobnicate", "unknown option --frobnicate")]
    [InlineData("--max-fail-percent=101", "--max-fail-percent must be between 0 and 100")]
    [InlineData("--reporting-interval=0", "--reporting-interval must be at least 1 second")]
    public void BadInput_IsOneErrorLine_AndExitCode2(string argument, string expected)
    {
        var command = LoadCommandLine.Parse([argument], NoShippedConfig);

        Assert.Equal(2, command.ExitCode);
        Assert.Null(command.Settings);
        Assert.Contains(expected, command.Error, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', command.Error!);
    }

    [Fact]
    public void ServerConfiguration_PassesThrough_WithEqualsOrWithItsValueNext()
    {
        var settings = Parse("--Server:Transport=epoll", "--Heartbeat:IntervalMs", "500", "--copies", "3");

        Assert.Equal(["--Server:Transport=epoll", "--Heartbeat:IntervalMs=500"], settings.ServerArgs);
        Assert.Equal(3, settings.Copies);
    }

    [Fact]
    public void AValueHoldingEqualsSignsAndColons_IsTakenWhole()
    {
        var settings = Parse("--metrics=http://h:9464/metrics?a=b", "--server", "10.0.0.5:7777");

        Assert.Equal("http://h:9464/metrics?a=b", settings.Metrics);
        Assert.Equal("10.0.0.5:7777", settings.Server);
    }

    [Fact]
    public void EachOption_SetsItsOwnSetting_AndNoOther()
    {
        var defaults = Parse();
        var clusterFolder = Directory.CreateTempSubdirectory("cluster-env-").FullName;
        File.WriteAllText(Path.Combine(clusterFolder, "cluster.env"), "PORT=7777\n"); // what --cluster requires to be there
        var properties = typeof(LoadSettings).GetProperties(BindingFlags.Public | BindingFlags.Instance).Where(p => p.CanWrite && p.Name != nameof(LoadSettings.ServerArgs)).ToList();
        Assert.True(properties.Count >= 20, $"only {properties.Count} settings seen");
        foreach (var property in properties)
        {
            var option = LoadCommandLine.OptionNames[property.Name];
            var (value, expected) = property.Name switch
            {
                nameof(LoadSettings.Server) => ("10.1.2.3:4567", (object)"10.1.2.3:4567"),
                nameof(LoadSettings.Metrics) => ("http://h:1/m", "http://h:1/m"),
                nameof(LoadSettings.Cluster) => (clusterFolder, clusterFolder),
                nameof(LoadSettings.Scenarios) => ("churn", new[] { "churn" }),
                nameof(LoadSettings.ReportFolder) => ("elsewhere", "elsewhere"),
                nameof(LoadSettings.ClientTransport) => ("sockets", "sockets"),
                _ when property.PropertyType == typeof(int) => (((int)property.GetValue(defaults)! + 1).ToString(System.Globalization.CultureInfo.InvariantCulture), (int)property.GetValue(defaults)! + 1),
                _ when property.PropertyType == typeof(double) => (((double)property.GetValue(defaults)! + 0.5).ToString(System.Globalization.CultureInfo.InvariantCulture), (double)property.GetValue(defaults)! + 0.5),
                _ => throw new InvalidOperationException($"no test value for {property.Name} ({property.PropertyType})"),
            };

            var settings = Parse(option, value);

            foreach (var other in properties)
            {
                var actual = other.GetValue(settings);
                if (other == property)
                {
                    Assert.True(expected is string[] list ? list.SequenceEqual((IEnumerable<string>)actual!) : Equals(expected, actual), $"{option} {value} set {property.Name} to {actual}");
                }
                else
                {
                    var before = other.GetValue(defaults);
                    Assert.True(before is IEnumerable<string> a && actual is IEnumerable<string> b ? a.SequenceEqual(b) : Equals(before, actual), $"{option} {value} changed {other.Name} too");
                }
            }
        }

        Directory.Delete(clusterFolder, recursive: true);
    }

    [Theory]
    [InlineData("1,5")]
    [InlineData("1.5.0")]
    [InlineData("abc")]
    public void ADecimalNumberNotWrittenWithADot_IsRefusedNamingTheOption(string value)
    {
        var command = LoadCommandLine.Parse(["--max-fail-percent", value], NoShippedConfig);

        Assert.Equal(2, command.ExitCode);
        Assert.Contains($"--max-fail-percent: '{value}' is not a number (write decimals with a dot, e.g. 1.5)", command.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void ADecimalNumber_IsReadWithADot_OrAnExponent()
    {
        Assert.Equal(1.5, Parse("--max-fail-percent", "1.5").MaxFailPercent);
        Assert.Equal(2e2, Parse("--max-echo-p99-ms=2e2").MaxEchoP99Ms);
    }

    [Fact]
    public void ServerSettingsInLowerCase_AreRefusedSayingHowTheyAreSpelled()
    {
        var command = LoadCommandLine.Parse(["--server:Transport=epoll"], NoShippedConfig);

        Assert.Equal(2, command.ExitCode);
        Assert.Equal("--server:Transport=epoll: server settings are spelled --Server:KEY=VALUE (with that capitalisation), e.g. --Server:Transport=epoll", command.Error);
    }

    [Fact]
    public void ServerSettings_WithServer_AreNotedAsUnused()
    {
        var command = LoadCommandLine.Parse(["--server", "10.0.0.5:7777", "--Server:Transport=epoll"], NoShippedConfig);

        Assert.NotNull(command.Settings);
        Assert.Contains(command.Notes, n => n == "--Server:Transport=epoll: server settings configure only a server the suite starts; with --server they are not used");
        Assert.Empty(LoadCommandLine.Parse(["--server", "10.0.0.5:7777", "--smoke"], NoShippedConfig).Notes); // the preset's own are not the user's
    }

    [Theory]
    [InlineData("ServerArgs")]
    [InlineData("Scenarios")]
    [InlineData("DurationSeconds")]
    [InlineData("ReportFolder")]
    public void ConfigFile_WithANullValue_IsRefusedNamingTheKey(string key)
    {
        var config = Write("nulls.json", $$"""{ "{{key}}": null }""");

        var command = LoadCommandLine.Parse(["--config", config], NoShippedConfig);

        Assert.Equal(2, command.ExitCode);
        Assert.Equal($"{config}: '{key}' must not be null: give a value, or leave the key out for the default", command.Error);
    }

    [Fact]
    public void ConfigFile_NullInsideAList_IsRefused_WhileNullServerMeansStartOne()
    {
        var command = LoadCommandLine.Parse(["--config", Write("items.json", """{ "ServerArgs": ["--Server:Transport=epoll", null] }""")], NoShippedConfig);
        Assert.Equal(2, command.ExitCode);
        Assert.Contains("'ServerArgs' must not be null inside its list", command.Error, StringComparison.Ordinal);

        var none = LoadCommandLine.Parse(["--config", Write("server.json", """{ "Server": null, "Metrics": null }""")], NoShippedConfig);
        Assert.Null(Assert.IsType<LoadSettings>(none.Settings).Server);
    }

    [Fact]
    public void Smoke_IsAPreset_ThatOptionsStillOverride_WhereverTheyStand()
    {
        var settings = Parse("--copies", "5", "--smoke");

        Assert.Equal(5, settings.Copies);
        Assert.Equal(10, settings.DurationSeconds);
        Assert.Contains("--Heartbeat:IntervalMs=1000", settings.ServerArgs);
    }

    [Fact]
    public void ShippedConfig_HoldsOnlyKnownSettings()
    {
        var shipped = Path.Combine(RepositoryRoot(), "config", "loadtest.json");

        var settings = new LoadSettings().OverlaidWith(shipped).Validated();

        Assert.Equal(60, settings.DurationSeconds);
        Assert.Equal(10, settings.ReportingIntervalSeconds);
    }

    private LoadSettings Parse(params string[] args)
    {
        var command = LoadCommandLine.Parse(args, NoShippedConfig);
        Assert.True(command.Settings is not null, command.Error);
        return command.Settings!;
    }

    private string Write(string name, string json)
    {
        var path = Path.Combine(folder, name);
        File.WriteAllText(path, json);
        return path;
    }

    /// <summary>The help's options, each its first line's option names and its whole text (descriptions wrap).</summary>
    private static List<(string Name, string Text)> HelpEntries(string help)
    {
        var entries = new List<(string Name, string Text)>();
        var options = help[help.IndexOf("Options:", StringComparison.Ordinal)..];
        foreach (var line in options.Split('\n').Skip(1))
        {
            var start = Regex.Match(line, @"^  (-\S.*?)\s{2,}(.*)$");
            if (start.Success)
            {
                entries.Add((start.Groups[1].Value, start.Groups[2].Value));
            }
            else if (entries.Count > 0 && line.Trim().Length > 0)
            {
                entries[^1] = (entries[^1].Name, $"{entries[^1].Text} {line.Trim()}");
            }
        }

        return entries;
    }

    private static string RepositoryRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "GameServer.sln")))
        {
            dir = dir.Parent;
        }

        return dir?.FullName ?? throw new InvalidOperationException("no repository root above the tests");
    }
}
