using System.Globalization;
using System.Net;
using System.Text;

namespace LoadTests.Harness;

/// <summary>
/// A self-contained HTML page (no scripts, no CDN): the statistics table and, per step, inline SVG charts of
/// throughput and p99 latency over time, one point per second.
/// </summary>
public static class HtmlReport
{
    private const int Width = 640;
    private const int Height = 140;

    public static string Render(
        IReadOnlyList<StepSnapshot> stats,
        IReadOnlyDictionary<string, IReadOnlyList<(long Ok, long Fail, double P99Ms)>> timelines,
        IReadOnlyList<string> failures)
    {
        var html = new StringBuilder();
        html.AppendLine("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Load report</title><style>");
        html.AppendLine("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}");
        html.AppendLine("th:first-child,td:first-child,th:nth-child(2),td:nth-child(2){text-align:left}.bad{color:#b00}svg{border:1px solid #ddd;margin:4px 12px 12px 0}");
        html.AppendLine("</style></head><body><h1>Load report</h1>");
        html.AppendLine(failures.Count == 0
            ? "<p>All thresholds held.</p>"
            : "<p class=\"bad\">Thresholds broken:</p><ul>" + string.Concat(failures.Select(f => $"<li class=\"bad\">{WebUtility.HtmlEncode(f)}</li>")) + "</ul>");
        html.AppendLine("<table><tr><th>scenario</th><th>step</th><th>ok</th><th>fail</th><th>rps</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>max ms</th></tr>");
        foreach (var s in stats)
        {
            html.AppendLine(string.Create(
                CultureInfo.InvariantCulture,
                $"<tr><td>{WebUtility.HtmlEncode(s.Scenario)}</td><td>{WebUtility.HtmlEncode(s.Step)}</td><td>{s.Ok}</td><td>{s.Fail}</td><td>{s.Rps:0.0}</td><td>{s.P50Ms:0.00}</td><td>{s.P95Ms:0.00}</td><td>{s.P99Ms:0.00}</td><td>{s.P999Ms:0.00}</td><td>{s.MaxMs:0.00}</td></tr>"));
        }

        html.AppendLine("</table>");
        foreach (var (name, timeline) in timelines.OrderBy(t => t.Key, StringComparer.Ordinal))
        {
            html.AppendLine($"<h2>{WebUtility.HtmlEncode(name)}</h2>");
            html.AppendLine(Chart("requests per second", timeline.Select(t => (double)(t.Ok + t.Fail)).ToList(), "#2a6"));
            html.AppendLine(Chart("p99 latency (ms)", timeline.Select(t => t.P99Ms).ToList(), "#26a"));
        }

        html.AppendLine("</body></html>");
        return html.ToString();
    }

    private static string Chart(string title, List<double> values, string colour)
    {
        var max = values.Count == 0 ? 1 : Math.Max(values.Max(), 1e-9);
        var step = values.Count > 1 ? (double)Width / (values.Count - 1) : Width;
        var points = string.Join(' ', values.Select((v, i) => string.Create(
            CultureInfo.InvariantCulture, $"{i * step:0.#},{Height - (v / max * (Height - 20)):0.#}")));
        return string.Create(
            CultureInfo.InvariantCulture,
            $"<svg width=\"{Width}\" height=\"{Height}\" viewBox=\"0 0 {Width} {Height}\"><text x=\"4\" y=\"14\" font-size=\"12\">{title} (max {max:0.##}, {values.Count} s)</text><polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\" points=\"{points}\"/></svg>");
    }
}
