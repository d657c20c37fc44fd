using System.Globalization;
using System.Text.RegularExpressions;

namespace LoadTests;

/// <summary>
/// The server's counts the after-run checks compare with what the clients did, read from one server's Prometheus
/// endpoint or summed over a cluster's gateways. A gateway about to be killed is read first (<see cref="BankAsync"/>):
/// its counters die with it, so what it counted so far is kept, and the connections it held then are noted (their
/// closes will never be counted anywhere).
/// </summary>
public sealed class ServerCounters(HttpClient http, IReadOnlyList<string> urls)
{
    private const string Closed = "gameserver_connections_closed_total";
    private static readonly string[] BankedCounters = ["gameserver_sessions_resumed_total", "gameserver_sessions_reliable_handled_total"];
    private readonly Dictionary<string, double> banked = new(StringComparer.Ordinal);
    private readonly Dictionary<string, double> bankedClosed = new(StringComparer.Ordinal);
    private readonly Dictionary<string, (double Closed, double Resumed)> bankedByUrl = new(StringComparer.Ordinal);
    private double heldAtKills;

    public bool Enabled => urls.Count > 0;

    public IReadOnlyList<string> Urls => urls;

    /// <summary>Connections the killed gateways held when they were killed: their closes were never counted.</summary>
    public double HeldAtKills
    {
        get
        {
            lock (banked)
            {
                return heldAtKills;
            }
        }
    }

    /// <summary>A gauge summed over the endpoints (what is there now: a killed gateway's are gone with it).</summary>
    public async Task<double> GaugeAsync(string name)
    {
        var sum = 0.0;
        foreach (var url in urls)
        {
            sum += await ReadAsync(url, name);
        }

        return sum;
    }

    /// <summary>A counter summed over the endpoints, plus what killed gateways had counted.</summary>
    public async Task<double> CounterAsync(string name)
    {
        var sum = await GaugeAsync(name);
        lock (banked)
        {
            return sum + banked.GetValueOrDefault(name);
        }
    }

    /// <summary>Connections closed, by reason, summed the same way.</summary>
    public async Task<Dictionary<string, double>> ClosedAsync()
    {
        var sum = new Dictionary<string, double>(StringComparer.Ordinal);
        foreach (var url in urls)
        {
            foreach (var (reason, count) in await ReadClosedAsync(url))
            {
                sum[reason] = sum.GetValueOrDefault(reason) + count;
            }
        }

        lock (banked)
        {
            foreach (var (reason, count) in bankedClosed)
            {
                sum[reason] = sum.GetValueOrDefault(reason) + count;
            }
        }

        return sum;
    }

    /// <summary>Keeps what the endpoint <paramref name="url"/> counted so far (it is about to be killed).</summary>
    public async Task BankAsync(string url)
    {
        var closed = await ReadClosedAsync(url);
        var counters = new Dictionary<string, double>(StringComparer.Ordinal);
        foreach (var name in BankedCounters)
        {
            counters[name] = await ReadAsync(url, name);
        }

        var held = await ReadAsync(url, "gameserver_connections_active");
        lock (banked)
        {
            foreach (var (reason, count) in closed)
            {
                bankedClosed[reason] = bankedClosed.GetValueOrDefault(reason) + count;
            }

            foreach (var (name, value) in counters)
            {
                banked[name] = banked.GetValueOrDefault(name) + value;
            }

            heldAtKills += held;
            var before = bankedByUrl.GetValueOrDefault(url);
            bankedByUrl[url] = (before.Closed + closed.Values.Sum(), before.Resumed + counters[BankedCounters[0]]);
        }
    }

    /// <summary>Per endpoint (a cluster's gateways): connections closed (every reason) and sessions resumed, what killed incarnations counted included.</summary>
    public async Task<IReadOnlyList<(string Url, double Closed, double Resumed)>> PerEndpointAsync()
    {
        var rows = new List<(string, double, double)>();
        foreach (var url in urls)
        {
            var closed = (await ReadClosedAsync(url)).Values.Sum();
            var resumed = await ReadAsync(url, BankedCounters[0]);
            lock (banked)
            {
                var kept = bankedByUrl.GetValueOrDefault(url);
                rows.Add((url, closed + kept.Closed, resumed + kept.Resumed));
            }
        }

        return rows;
    }

    private async Task<Dictionary<string, double>> ReadClosedAsync(string url)
    {
        var text = await http.GetStringAsync(new Uri(url));
        return Regex.Matches(text, $@"^{Closed}\{{[^}}]*reason=""([a-z_]+)""[^}}]*\}} ([0-9.eE+-]+)", RegexOptions.Multiline)
            .GroupBy(m => m.Groups[1].Value)
            .ToDictionary(g => g.Key, g => g.Sum(m => double.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture)), StringComparer.Ordinal);
    }

    private async Task<double> ReadAsync(string url, string name)
    {
        var text = await http.GetStringAsync(new Uri(url));
        var match = Regex.Match(text, $@"^{name}(\{{[^}}]*\}})? ([0-9.eE+-]+)", RegexOptions.Multiline);
        return match.Success ? double.Parse(match.Groups[2].Value, CultureInfo.InvariantCulture) : 0;
    }
}
