using System.Globalization;
using System.Net;
using System.Text;

namespace LoadTests.Harness;

/// <summary>
/// A self-contained HTML page (no scripts, no CDN: load machines are often offline): the verdict, the statistics,
/// thresholds, the close reasons expected and observed as a table and a bar chart, and per step inline SVG charts of
/// throughput and latency percentiles over time, with axes, tick labels, grid lines and legends.
/// </summary>
public static class HtmlReport
{
    private const int ChartWidth = 640;
    private const int ChartHeight = 280;
    private const int Left = 70;
    private const int Right = 20;
    private const int Top = 52;
    private const int Bottom = 48;
    private const string Ok = "#1b9e5a";
    private const string Bad = "#d1352b";
    private const string Expected = "#8a8f98";

    public static string Render(RunResult result)
    {
        var html = new StringBuilder();
        html.AppendLine("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Load report</title><style>");
        html.AppendLine("body{font-family:system-ui,sans-serif;margin:24px 32px;color:#222}h1{margin:0 0 4px}h2{margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}h3{margin:18px 0 6px}");
        html.AppendLine("table{border-collapse:collapse;font-size:13px;margin:6px 0}td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}th{background:#f3f3f3}");
        html.AppendLine("td.l,th.l{text-align:left}.verdict{display:inline-block;padding:4px 12px;border-radius:4px;color:#fff;font-weight:bold}.pass{background:" + Ok + "}.fail{background:" + Bad + "}");
        html.AppendLine(".bad{color:" + Bad + ";font-weight:bold}.good{color:" + Ok + "}.charts{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}svg.chart{background:#fff;border:1px solid #ddd}.muted{color:#666;font-size:13px}.warn{color:#9a6700}");
        html.AppendLine("</style></head><body>");
        html.AppendLine(string.Create(CultureInfo.InvariantCulture, $"<h1>Load report</h1><p class=\"muted\">Started {result.StartedUtc:yyyy-MM-dd HH:mm:ss} UTC, ran {result.Elapsed.TotalSeconds:0.0} s. Latencies in milliseconds.</p>"));
        html.AppendLine(result.Passed
            ? "<p><span class=\"verdict pass\">PASSED</span> every threshold held and every check matched.</p>"
            : "<p><span class=\"verdict fail\">FAILED</span></p><ul>" + string.Concat(result.BrokenThresholds.Select(f => $"<li class=\"bad\">{E(f)}</li>")) + "</ul>");
        foreach (var warning in result.Warnings)
        {
            html.AppendLine($"<p class=\"warn\">Warning: {E(warning)}</p>");
        }

        if (result.AbortedBy is not null)
        {
            html.AppendLine($"<p class=\"bad\">Stopped early by the threshold {E(result.AbortedBy)}.</p>");
        }

        html.AppendLine("<h2>Statistics</h2><table><tr><th class=\"l\">scenario</th><th class=\"l\">step</th><th>ok</th><th>fail</th><th>fail %</th><th>rps</th><th>min</th><th>mean</th><th>p50</th><th>p75</th><th>p95</th><th>p99</th><th>p99.9</th><th>max</th><th>bytes</th><th class=\"l\">status codes</th></tr>");
        foreach (var s in result.Stats)
        {
            html.AppendLine(string.Create(
                CultureInfo.InvariantCulture,
                $"<tr><td class=\"l\">{E(s.Scenario)}</td><td class=\"l\">{E(s.Step)}</td><td>{s.Ok}</td><td{(s.Fail > 0 ? " class=\"bad\"" : string.Empty)}>{s.Fail}</td><td>{s.FailPercent:0.00}</td><td>{s.Rps:0.0}</td><td>{s.MinMs:0.00}</td><td>{s.MeanMs:0.00}</td><td>{s.P50Ms:0.00}</td><td>{s.P75Ms:0.00}</td><td>{s.P95Ms:0.00}</td><td>{s.P99Ms:0.00}</td><td>{s.P999Ms:0.00}</td><td>{s.MaxMs:0.00}</td><td>{s.Bytes}</td><td class=\"l\">{E(ReportWriter.Codes(s))}</td></tr>"));
        }

        html.AppendLine("</table>");
        html.AppendLine($"<p class=\"muted\">{E(ReportWriter.GeneratorLine(result.Generator))}</p>");

        html.AppendLine("<h2>Thresholds</h2>");
        if (result.Thresholds.Count == 0)
        {
            html.AppendLine("<p class=\"muted\">None.</p>");
        }
        else
        {
            html.AppendLine("<table><tr><th class=\"l\">scenario</th><th class=\"l\">step</th><th class=\"l\">threshold</th><th class=\"l\">verdict</th><th class=\"l\">checks during the run and at its end</th></tr>");
            foreach (var t in result.Thresholds)
            {
                html.AppendLine($"<tr><td class=\"l\">{E(t.Scenario)}</td><td class=\"l\">{E(t.Step)}</td><td class=\"l\"><code>{E(t.Description)}</code></td><td class=\"l {(t.Passed ? "good" : "bad")}\">{E(ReportWriter.ThresholdState(t))}</td><td class=\"l\">{E(ReportWriter.ChecksText(t))}</td></tr>");
            }

            html.AppendLine("</table>");
        }

        html.AppendLine("<h2>Close reasons</h2>");
        if (result.CloseReasons.Count == 0)
        {
            html.AppendLine("<p class=\"muted\">Not compared: no metrics endpoint to read the server's <code>gameserver_connections_closed_total</code> from.</p>");
        }
        else
        {
            html.AppendLine("<p class=\"muted\">Expected: what the victims' close modes (and the Goodbyes of play, churn and resume) predict. Observed: the increase of the server's <code>gameserver_connections_closed_total{reason}</code> over the run.</p>");
            html.AppendLine("<div class=\"charts\">");
            html.AppendLine(CloseReasonChart(result.CloseReasons));
            html.AppendLine("<table><tr><th class=\"l\">reason</th><th>expected</th><th>observed</th><th class=\"l\"></th></tr>");
            foreach (var r in result.CloseReasons)
            {
                html.AppendLine(string.Create(
                    CultureInfo.InvariantCulture,
                    $"<tr><td class=\"l\">{E(r.Reason)}</td><td>{r.Expected}</td><td>{r.Observed}</td><td class=\"l {(r.Matches ? "good" : "bad")}\">{(r.Matches ? "matches" : "MISMATCH")}</td></tr>"));
            }

            html.AppendLine("</table></div>");
        }

        if (result.Checks.Count > 0)
        {
            html.AppendLine("<h2>Other checks</h2><table><tr><th class=\"l\">check</th><th>expected</th><th>observed</th><th class=\"l\"></th></tr>");
            foreach (var c in result.Checks)
            {
                html.AppendLine($"<tr><td class=\"l\">{E(c.Name)}</td><td>{E(c.Expected)}</td><td>{E(c.Observed)}</td><td class=\"l {(c.Holds ? "good" : "bad")}\">{(c.Holds ? "matches" : "MISMATCH")}</td></tr>");
            }

            html.AppendLine("</table>");
        }

        html.AppendLine("<h2>Over time</h2><p class=\"muted\">One point per second of the measured run; the time axis counts seconds from the scenario's start, so a warm-up shows as the empty start.</p>");
        foreach (var scenario in result.Timelines.GroupBy(t => t.Scenario, StringComparer.Ordinal))
        {
            html.AppendLine($"<h3>{E(scenario.Key)}</h3>");
            foreach (var timeline in scenario)
            {
                var name = $"{timeline.Scenario}/{timeline.Step}";
                var seconds = timeline.Points.Select(p => p.Second).ToList();
                html.AppendLine("<div class=\"charts\">");
                html.AppendLine(LineChart(
                    $"{name}: requests per second",
                    "requests/s",
                    seconds,
                    [("ok", Ok, timeline.Points.Select(p => p.Ok).ToList()), ("fail", Bad, timeline.Points.Select(p => p.Fail).ToList())]));
                html.AppendLine(LineChart(
                    $"{name}: latency",
                    "ms",
                    seconds,
                    [
                        ("p50", "#2b6cb0", timeline.Points.Select(p => p.P50Ms).ToList()),
                        ("p95", "#dd8a1c", timeline.Points.Select(p => p.P95Ms).ToList()),
                        ("p99", "#8e3fb5", timeline.Points.Select(p => p.P99Ms).ToList()),
                    ]));
                html.AppendLine("</div>");
            }
        }

        html.AppendLine("</body></html>");
        return html.ToString();
    }

    /// <summary>A line chart: time on x (seconds), values on y from 0, grid lines at the ticks, a legend under the title.</summary>
    internal static string LineChart(string title, string yUnit, IReadOnlyList<double> xs, IReadOnlyList<(string Name, string Colour, List<double> Values)> series)
    {
        var plotWidth = ChartWidth - Left - Right;
        var plotHeight = ChartHeight - Top - Bottom;
        // From 0, the start of the scenario, so the charts of every scenario share their time axis and a warm-up shows
        // as the empty start.
        var xMin = 0.0;
        var xLast = xs.Count == 0 ? 1 : Math.Max(1, xs.Max());
        var xStep = Math.Max(1, NiceStep(xLast, 8));
        var xMax = Math.Ceiling(xLast / xStep) * xStep; // the axis ends on a labelled tick

        var yTop = series.SelectMany(s => s.Values).Where(double.IsFinite).DefaultIfEmpty(0).Max();
        var yStep = NiceStep(yTop <= 0 ? 1 : yTop, 5);
        var yMax = Math.Max(yStep, Math.Ceiling(yTop / yStep) * yStep);
        double X(double x) => Left + ((x - xMin) / (xMax - xMin) * plotWidth);
        double Y(double y) => Top + plotHeight - (y / yMax * plotHeight);

        var svg = new StringBuilder();
        svg.Append(string.Create(CultureInfo.InvariantCulture, $"<svg class=\"chart\" width=\"{ChartWidth}\" height=\"{ChartHeight}\" viewBox=\"0 0 {ChartWidth} {ChartHeight}\" role=\"img\" aria-label=\"{E(title)}\">"));
        svg.Append(string.Create(CultureInfo.InvariantCulture, $"<text x=\"{Left}\" y=\"18\" font-size=\"14\" font-weight=\"bold\">{E(title)}</text>"));
        Legend(svg, Left, 38, series.Select(s => (s.Name, s.Colour)));

        // Grid and tick labels: y every yStep, x every xStep seconds.
        svg.Append("<g class=\"grid\" stroke=\"#e4e4e4\" stroke-width=\"1\">");
        for (var y = 0.0; y <= yMax + (yStep / 2); y += yStep)
        {
            svg.Append(string.Create(CultureInfo.InvariantCulture, $"<line x1=\"{Left}\" x2=\"{Left + plotWidth}\" y1=\"{Y(y):0.#}\" y2=\"{Y(y):0.#}\"/>"));
        }

        for (var x = Math.Ceiling(xMin / xStep) * xStep; x <= xMax + 1e-9; x += xStep)
        {
            svg.Append(string.Create(CultureInfo.InvariantCulture, $"<line x1=\"{X(x):0.#}\" x2=\"{X(x):0.#}\" y1=\"{Top}\" y2=\"{Top + plotHeight}\"/>"));
        }

        svg.Append("</g><g class=\"y-axis\" font-size=\"11\" text-anchor=\"end\" fill=\"#444\">");
        for (var y = 0.0; y <= yMax + (yStep / 2); y += yStep)
        {
            svg.Append(string.Create(CultureInfo.InvariantCulture, $"<text x=\"{Left - 6}\" y=\"{Y(y) + 4:0.#}\">{Tick(y, yStep)}</text>"));
        }

        svg.Append("</g><g class=\"x-axis\" font-size=\"11\" text-anchor=\"middle\" fill=\"#444\">");
        for (var x = Math.Ceiling(xMin / xStep) * xStep; x <= xMax + 1e-9; x += xStep)
        {
            svg.Append(string.Create(CultureInfo.InvariantCulture, $"<text x=\"{X(x):0.#}\" y=\"{Top + plotHeight + 16}\">{Tick(x, xStep)}</text>"));
        }

        svg.Append("</g>");
        svg.Append(string.Create(CultureInfo.InvariantCulture, $"<line class=\"axis\" x1=\"{Left}\" x2=\"{Left}\" y1=\"{Top}\" y2=\"{Top + plotHeight}\" stroke=\"#333\"/>"));
        svg.Append(string.Create(CultureInfo.InvariantCulture, $"<line class=\"axis\" x1=\"{Left}\" x2=\"{Left + plotWidth}\" y1=\"{Top + plotHeight}\" y2=\"{Top + plotHeight}\" stroke=\"#333\"/>"));
        svg.Append(string.Create(CultureInfo.InvariantCulture, $"<text x=\"{Left + (plotWidth / 2)}\" y=\"{ChartHeight - 8}\" font-size=\"12\" text-anchor=\"middle\">seconds since start</text>"));
        svg.Append(string.Create(CultureInfo.InvariantCulture, $"<text transform=\"translate(16 {Top + (plotHeight / 2)}) rotate(-90)\" font-size=\"12\" text-anchor=\"middle\">{E(yUnit)}</text>"));

        foreach (var (name, colour, values) in series)
        {
            // A second without a value (NaN: no successful request to time) breaks the line instead of dropping it to 0.
            var segment = new List<string>();
            void Flush()
            {
                if (segment.Count > 0)
                {
                    svg.Append(string.Create(CultureInfo.InvariantCulture, $"<polyline class=\"series\" data-series=\"{E(name)}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{string.Join(' ', segment)}\"/>"));
                    segment.Clear();
                }
            }

            for (var i = 0; i < values.Count; i++)
            {
                if (double.IsFinite(values[i]))
                {
                    segment.Add(string.Create(CultureInfo.InvariantCulture, $"{X(xs[i]):0.#},{Y(values[i]):0.#}"));
                }
                else
                {
                    Flush();
                }
            }

            Flush();
            if (values.Count <= 60)
            {
                foreach (var (v, i) in values.Select((v, i) => (v, i)).Where(p => double.IsFinite(p.v)))
                {
                    svg.Append(string.Create(CultureInfo.InvariantCulture, $"<circle cx=\"{X(xs[i]):0.#}\" cy=\"{Y(v):0.#}\" r=\"2.5\" fill=\"{colour}\"/>"));
                }
            }
        }

        svg.Append("</svg>");
        return svg.ToString();
    }

    /// <summary>Grouped horizontal bars per close reason: expected, then observed (green when it matches, red when not).</summary>
    internal static string CloseReasonChart(IReadOnlyList<CloseReasonRow> reasons)
    {
        const int labelWidth = 175;
        const int bar = 14;
        const int groupGap = 14;
        var plotWidth = ChartWidth - labelWidth - Right - 40;
        var plotHeight = reasons.Count * ((2 * bar) + groupGap);
        var height = Top + plotHeight + Bottom;
        var top = reasons.SelectMany(r => new[] { r.Expected, r.Observed }).DefaultIfEmpty(0).Max();
        var step = NiceStep(top <= 0 ? 1 : top, 5);
        var max = Math.Max(step, Math.Ceiling(top / step) * step);
        double X(double v) => labelWidth + (v / max * plotWidth);

        var svg = new StringBuilder();
        svg.Append(string.Create(CultureInfo.InvariantCulture, $"<svg class=\"chart close-reasons\" width=\"{ChartWidth}\" height=\"{height}\" viewBox=\"0 0 {ChartWidth} {height}\" role=\"img\" aria-label=\"close reasons expected and observed\">"));
        svg.Append(string.Create(CultureInfo.InvariantCulture, $"<text x=\"{labelWidth}\" y=\"18\" font-size=\"14\" font-weight=\"bold\">close reasons: expected vs observed on the server</text>"));
        Legend(svg, labelWidth, 38, [("expected", Expected), ("observed, matches", Ok), ("observed, mismatch", Bad)]);
        svg.Append("<g class=\"grid\" stroke=\"#e4e4e4\">");
        for (var v = 0.0; v <= max + (step / 2); v += step)
        {
            svg.Append(string.Create(CultureInfo.InvariantCulture, $"<line x1=\"{X(v):0.#}\" x2=\"{X(v):0.#}\" y1=\"{Top}\" y2=\"{Top + plotHeight}\"/>"));
        }

        svg.Append("</g><g class=\"x-axis\" font-size=\"11\" text-anchor=\"middle\" fill=\"#444\">");
        for (var v = 0.0; v <= max + (step / 2); v += step)
        {
            svg.Append(string.Create(CultureInfo.InvariantCulture, $"<text x=\"{X(v):0.#}\" y=\"{Top + plotHeight + 16}\">{Tick(v, step)}</text>"));
        }

        svg.Append("</g>");
        svg.Append(string.Create(CultureInfo.InvariantCulture, $"<line class=\"axis\" x1=\"{labelWidth}\" x2=\"{labelWidth}\" y1=\"{Top}\" y2=\"{Top + plotHeight}\" stroke=\"#333\"/>"));
        svg.Append(string.Create(CultureInfo.InvariantCulture, $"<line class=\"axis\" x1=\"{labelWidth}\" x2=\"{labelWidth + plotWidth}\" y1=\"{Top + plotHeight}\" y2=\"{Top + plotHeight}\" stroke=\"#333\"/>"));
        svg.Append(string.Create(CultureInfo.InvariantCulture, $"<text x=\"{labelWidth + (plotWidth / 2)}\" y=\"{height - 8}\" font-size=\"12\" text-anchor=\"middle\">connections closed</text>"));
        for (var i = 0; i < reasons.Count; i++)
        {
            var r = reasons[i];
            var y = Top + (groupGap / 2) + (i * ((2 * bar) + groupGap));
            var observedColour = r.Matches ? Ok : Bad;
            svg.Append(string.Create(CultureInfo.InvariantCulture, $"<text x=\"{labelWidth - 8}\" y=\"{y + bar + 4}\" font-size=\"12\" text-anchor=\"end\">{E(r.Reason)}</text>"));
            svg.Append(string.Create(CultureInfo.InvariantCulture, $"<rect class=\"expected\" data-reason=\"{E(r.Reason)}\" x=\"{labelWidth}\" y=\"{y}\" width=\"{Math.Max(0, X(r.Expected) - labelWidth):0.#}\" height=\"{bar - 1}\" fill=\"{Expected}\"/>"));
            svg.Append(string.Create(CultureInfo.InvariantCulture, $"<text x=\"{X(r.Expected) + 4:0.#}\" y=\"{y + bar - 3}\" font-size=\"11\" fill=\"#444\">{r.Expected}</text>"));
            svg.Append(string.Create(CultureInfo.InvariantCulture, $"<rect class=\"observed\" data-reason=\"{E(r.Reason)}\" x=\"{labelWidth}\" y=\"{y + bar}\" width=\"{Math.Max(0, X(r.Observed) - labelWidth):0.#}\" height=\"{bar - 1}\" fill=\"{observedColour}\"/>"));
            svg.Append(string.Create(CultureInfo.InvariantCulture, $"<text x=\"{X(r.Observed) + 4:0.#}\" y=\"{y + (2 * bar) - 3}\" font-size=\"11\" fill=\"{(r.Matches ? "#444" : Bad)}\">{r.Observed}{(r.Matches ? string.Empty : " ✗")}</text>"));
        }

        svg.Append("</svg>");
        return svg.ToString();
    }

    /// <summary>A step of 1, 2, 2.5 or 5 times a power of ten that cuts <paramref name="range"/> into about <paramref name="ticks"/> parts.</summary>
    internal static double NiceStep(double range, int ticks)
    {
        var raw = range / ticks;
        var magnitude = Math.Pow(10, Math.Floor(Math.Log10(raw)));
        var normalised = raw / magnitude;
        var nice = normalised <= 1 ? 1 : normalised <= 2 ? 2 : normalised <= 2.5 ? 2.5 : normalised <= 5 ? 5 : 10;
        return nice * magnitude;
    }

    private static string Tick(double value, double step)
    {
        if (Math.Abs(value) >= 10_000)
        {
            return (value / 1000).ToString("0.#", CultureInfo.InvariantCulture) + "k";
        }

        // As many decimals as the step needs to be exact (2.5 needs one), at most three.
        var decimals = 0;
        while (decimals < 3 && Math.Abs((step * Math.Pow(10, decimals)) - Math.Round(step * Math.Pow(10, decimals))) > 1e-6)
        {
            decimals++;
        }

        return value.ToString("F" + decimals.ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);
    }

    private static void Legend(StringBuilder svg, int x, int y, IEnumerable<(string Name, string Colour)> entries)
    {
        svg.Append("<g class=\"legend\" font-size=\"12\">");
        foreach (var (name, colour) in entries)
        {
            svg.Append(string.Create(CultureInfo.InvariantCulture, $"<rect x=\"{x}\" y=\"{y - 10}\" width=\"12\" height=\"12\" fill=\"{colour}\"/><text x=\"{x + 16}\" y=\"{y}\">{E(name)}</text>"));
            x += 28 + (7 * name.Length);
        }

        svg.Append("</g>");
    }

    private static string E(string text) => WebUtility.HtmlEncode(text);
}
