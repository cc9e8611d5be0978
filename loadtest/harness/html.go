package harness

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"strings"
	"time"
)

// HTML writes the report as one self-contained page: inline CSS and SVG
// charts, no scripts, nothing fetched.
func (r *Report) HTML(w io.Writer) error {
	type card struct{ Label, Value, Note string }
	var cards []card
	cards = append(cards,
		card{"produced", count(int64(r.Produced.Rate)) + "/s", fmt.Sprintf("%s records in %.0fs", count(r.Produced.Good+r.Produced.Bad), r.Produced.Seconds)},
		card{"ingested", count(int64(r.Ingest.Rate)) + "/s", fmt.Sprintf("%s rows, %s dead letters", count(r.Ingest.Rows), count(r.Ingest.DeadLetters))},
		card{"ack → committed p50", fmt.Sprintf("%.0f ms", r.CommitLatencyMS.P50), fmt.Sprintf("p99 %.0f ms, max %.0f ms", r.CommitLatencyMS.P99, r.CommitLatencyMS.Max)},
	)
	if r.SummaryLatencyS != nil && r.SummaryLatencyS.Count > 0 {
		cards = append(cards, card{"window end → summary p50", fmt.Sprintf("%.1f s", r.SummaryLatencyS.P50), fmt.Sprintf("p99 %.1f s (includes the allowed lateness)", r.SummaryLatencyS.P99)})
	}
	lagNote := "bounded: kept up"
	if !r.Lag.Bounded {
		lagNote = "growing: did not keep up"
	}
	cards = append(cards, card{"max lag", count(r.Lag.MaxPipeline), lagNote})
	if p := r.Process; p != nil {
		cards = append(cards, card{"peak RSS", fmt.Sprintf("%.0f MiB", float64(p.PeakRSSBytes)/(1<<20)), fmt.Sprintf("%.2f cores avg; %s", p.AvgCores, p.Label)})
	}

	var charts []template.HTML
	t := make([]float64, len(r.Series))
	prod, ing, lag, clag, cpu, rss := make([]float64, len(t)), make([]float64, len(t)), make([]float64, len(t)), []float64{}, make([]float64, len(t)), make([]float64, len(t))
	haveCL := false
	for i, s := range r.Series {
		t[i], prod[i], ing[i], lag[i], cpu[i], rss[i] = s.T, s.ProduceRate, s.IngestRate, float64(s.PipelineLag), s.CPUCores, float64(s.RSSBytes)/(1<<20)
		if s.ConsumerLag != nil {
			haveCL = true
			clag = append(clag, *s.ConsumerLag)
		} else {
			clag = append(clag, math.NaN())
		}
	}
	charts = append(charts, lineChart("Throughput", "seconds", "records/s", t,
		[]series{{"produced (acked)", "#2f6fdf", prod}, {"committed", "#e07b24", ing}}, ""))
	lagSeries := []series{{"acked, not yet committed", "#c0392b", lag}}
	if haveCL {
		lagSeries = append(lagSeries, series{"consumer lag (ingester metric)", "#8e44ad", clag})
	}
	charts = append(charts, lineChart("Lag", "seconds", "records", t, lagSeries, ""))
	if len(r.CommitLatencyCDF) > 0 {
		charts = append(charts, percentileChart("Latency: broker ack → committed", r.CommitLatencyCDF))
	}
	if r.Process != nil {
		charts = append(charts, lineChart("CPU", "seconds", "cores", t, []series{{"cores", "#16a085", cpu}}, r.Process.Label))
		charts = append(charts, lineChart("Memory", "seconds", "RSS MiB", t, []series{{"RSS", "#7f8c8d", rss}}, r.Process.Label))
	}

	var text strings.Builder
	r.Text(&text)
	data := map[string]any{
		"R": r, "Cards": cards, "Charts": charts, "Text": text.String(),
		"When": r.Started.Format(time.RFC1123),
	}
	return pageTmpl.Execute(w, data)
}

var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sluice load test: {{.R.Verdict}}</title>
<style>
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{padding:22px 32px;color:#fff;background:{{if .R.OK}}#1e8e4e{{else}}#b3261e{{end}}}
header h1{margin:0;font-size:26px}header p{margin:4px 0 0;opacity:.9}
main{padding:20px 32px;max-width:1200px}
.cards{display:flex;flex-wrap:wrap;gap:14px;margin-bottom:20px}
.card{background:#fff;border-radius:8px;padding:14px 18px;min-width:170px;box-shadow:0 1px 3px rgba(0,0,0,.08)}
.card .v{font-size:26px;font-weight:600}.card .l{color:#5b6475;font-size:13px;text-transform:uppercase;letter-spacing:.04em}.card .n{color:#5b6475;font-size:12px}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:16px}
.chart{background:#fff;border-radius:8px;padding:10px;box-shadow:0 1px 3px rgba(0,0,0,.08)}
.fail{background:#fdecea;border-left:4px solid #b3261e;padding:8px 14px;margin:0 0 16px}
table{border-collapse:collapse;background:#fff;margin:8px 0 18px}td,th{padding:5px 12px;border-bottom:1px solid #e3e6ea;text-align:right}th:first-child,td:first-child{text-align:left}
pre{background:#fff;padding:12px;border-radius:8px;overflow:auto;font-size:12px}
</style></head><body>
<header><h1>Sluice load test: {{.R.Verdict}}</h1><p>{{.R.Mode}} · started {{.When}} · target {{if .R.Config.Rate}}{{printf "%.0f" .R.Config.Rate}} events/s{{else}}flat out{{end}}{{if .R.Config.Duration}} for {{.R.Config.Duration}}{{end}}</p></header>
<main>
{{if .R.Failures}}<div class="fail"><b>What differs</b><ul>{{range .R.Failures}}<li>{{.}}</li>{{end}}</ul></div>{{end}}
<div class="cards">{{range .Cards}}<div class="card"><div class="l">{{.Label}}</div><div class="v">{{.Value}}</div><div class="n">{{.Note}}</div></div>{{end}}</div>
<div class="charts">{{range .Charts}}<div class="chart">{{.}}</div>{{end}}</div>
{{with .R.Summaries}}<h2>Summaries</h2><table><tr><th>window</th><th>closed</th><th>verified</th><th>wrong</th><th>open</th><th>groups</th></tr>
{{range .Windows}}<tr><td>{{.Window}}</td><td>{{.Closed}}</td><td>{{.Verified}}</td><td>{{.Failed}}</td><td>{{.Open}}</td><td>{{.Groups}}</td></tr>{{end}}</table>
<p>Every measure of every closed window compared with the generators' own truth.</p>{{end}}
{{with .R.Aggregator}}<p>Aggregator: {{.Summarised}} windows summarised, {{.Recomputed}} recomputed for late data, {{.Late}} frozen windows got {{.TooLateRecords}} too-late records; {{$.R.Produced.LateBeyondLateness}} events were produced later than the allowed lateness.</p>{{end}}
<h2>Latency</h2><table><tr><th></th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th><th>samples</th></tr>
{{with .R.AckLatencyMS}}<tr><td>produce → broker ack (ms)</td><td>{{printf "%.1f" .P50}}</td><td>{{printf "%.1f" .P90}}</td><td>{{printf "%.1f" .P99}}</td><td>{{printf "%.1f" .P999}}</td><td>{{printf "%.1f" .Max}}</td><td>{{.Count}}</td></tr>{{end}}
{{with .R.CommitLatencyMS}}<tr><td>broker ack → committed (ms)</td><td>{{printf "%.0f" .P50}}</td><td>{{printf "%.0f" .P90}}</td><td>{{printf "%.0f" .P99}}</td><td>{{printf "%.0f" .P999}}</td><td>{{printf "%.0f" .Max}}</td><td>{{.Count}}</td></tr>{{end}}
{{with .R.SummaryLatencyS}}<tr><td>window end → summary (s)</td><td>{{printf "%.1f" .P50}}</td><td>{{printf "%.1f" .P90}}</td><td>{{printf "%.1f" .P99}}</td><td>{{printf "%.1f" .P999}}</td><td>{{printf "%.1f" .Max}}</td><td>{{.Count}}</td></tr>{{end}}
</table>
<h2>Full report</h2><pre>{{.Text}}</pre>
</main></body></html>
`))

type series struct {
	Name  string
	Color string
	Y     []float64 // NaN: no value
}

// The layout of a chart, top to bottom: the title, a subtitle line (what
// was measured), the legend row, the plot, the x axis labels and its title.
const (
	chartW, chartH         = 560, 280
	padL, padR, padT, padB = 64, 16, 60, 54
	titleY, subtitleY      = 18, 33
	legendY                = 48 // baseline of the legend row, below title and subtitle
)

// lineChart draws series against x as an inline SVG; subtitle, if not
// empty, says what was measured (e.g. which process).
func lineChart(title, xLabel, yLabel string, x []float64, ss []series, subtitle string) template.HTML {
	xmax, ymax := 1.0, 0.0
	for _, v := range x {
		xmax = math.Max(xmax, v)
	}
	for _, s := range ss {
		for _, v := range s.Y {
			if !math.IsNaN(v) {
				ymax = math.Max(ymax, v)
			}
		}
	}
	ymax = niceCeil(ymax)
	px := func(v float64) float64 { return padL + v/xmax*(chartW-padL-padR) }
	py := func(v float64) float64 { return chartH - padB - v/ymax*(chartH-padT-padB) }
	var b strings.Builder
	svgHead(&b, title, subtitle)
	axes(&b, ymax, func(v float64) string { return short(v) }, py)
	for i := 0; i <= 5; i++ {
		v := xmax * float64(i) / 5
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" font-size="11" text-anchor="middle" fill="#5b6475">%.0f</text>`, px(v), chartH-padB+16, v)
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="11" text-anchor="middle" fill="#5b6475">%s</text>`, (padL+chartW-padR)/2, chartH-padB+32, template.HTMLEscapeString(xLabel))
	fmt.Fprintf(&b, `<text x="12" y="%d" font-size="11" fill="#5b6475" transform="rotate(-90 12 %d)" text-anchor="middle">%s</text>`, (padT+chartH-padB)/2, (padT+chartH-padB)/2, template.HTMLEscapeString(yLabel))
	for _, s := range ss {
		var pts []string
		flush := func() {
			if len(pts) > 0 {
				fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`, s.Color, strings.Join(pts, " "))
			}
			pts = pts[:0]
		}
		for i, v := range s.Y {
			if math.IsNaN(v) || i >= len(x) {
				flush()
				continue
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(x[i]), py(v)))
		}
		flush()
	}
	legend(&b, ss)
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// percentileChart draws a latency distribution with the percentile axis
// spread like HdrHistogram's plots: 1/(1-p), so the tail gets the room.
func percentileChart(title string, pts []CDFPoint) template.HTML {
	xOf := func(p float64) float64 { return math.Log10(1 / math.Max(1e-4, 1-p/100)) } // 0 .. 4
	ymax := 0.0
	for _, p := range pts {
		ymax = math.Max(ymax, p.Value)
	}
	ymax = niceCeil(ymax)
	px := func(p float64) float64 { return padL + xOf(p)/4*(chartW-padL-padR) }
	py := func(v float64) float64 { return chartH - padB - v/ymax*(chartH-padT-padB) }
	var b strings.Builder
	svgHead(&b, title, "")
	axes(&b, ymax, func(v float64) string { return short(v) + " ms" }, py)
	ticks := []float64{0, 90, 99, 99.9, 99.99}
	for i, p := range ticks {
		// The last tick sits on the plot's right edge: its label ends there
		// instead of being centred over it and cut by the frame.
		anchor := "middle"
		if i == len(ticks)-1 {
			anchor = "end"
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" font-size="11" text-anchor="%s" fill="#5b6475">p%g</text>`, px(p), chartH-padB+16, anchor, p)
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="11" text-anchor="middle" fill="#5b6475">percentile</text>`, (padL+chartW-padR)/2, chartH-padB+32)
	var ps []string
	for _, p := range pts {
		ps = append(ps, fmt.Sprintf("%.1f,%.1f", px(p.Percentile), py(p.Value)))
	}
	fmt.Fprintf(&b, `<polyline fill="none" stroke="#2f6fdf" stroke-width="2" points="%s"/>`, strings.Join(ps, " "))
	for _, p := range pts {
		fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="2.5" fill="#2f6fdf"><title>p%g: %.0f ms</title></circle>`, px(p.Percentile), py(p.Value), p.Percentile, p.Value)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

func svgHead(b *strings.Builder, title, subtitle string) {
	fmt.Fprintf(b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="100%%" role="img" font-family="system-ui,sans-serif">`, chartW, chartH)
	fmt.Fprintf(b, `<text x="%d" y="%d" font-size="14" font-weight="600" fill="#1d2330">%s</text>`, padL, titleY, template.HTMLEscapeString(title))
	if subtitle != "" {
		fmt.Fprintf(b, `<text x="%d" y="%d" font-size="11" fill="#5b6475">%s</text>`, padL, subtitleY, template.HTMLEscapeString(subtitle))
	}
}

func axes(b *strings.Builder, ymax float64, label func(float64) string, py func(float64) float64) {
	for i := 0; i <= 4; i++ {
		v := ymax * float64(i) / 4
		y := py(v)
		fmt.Fprintf(b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#e3e6ea"/>`, padL, chartW-padR, y, y)
		fmt.Fprintf(b, `<text x="%d" y="%.1f" font-size="11" text-anchor="end" fill="#5b6475">%s</text>`, padL-6, y+4, label(v))
	}
}

// legend draws one row of series names under the title and subtitle, so
// that no title, however long, runs into it.
func legend(b *strings.Builder, ss []series) {
	x := padL
	for _, s := range ss {
		fmt.Fprintf(b, `<rect x="%d" y="%d" width="12" height="4" fill="%s"/><text x="%d" y="%d" font-size="11" fill="#1d2330">%s</text>`,
			x, legendY-6, s.Color, x+16, legendY, template.HTMLEscapeString(s.Name))
		x += 24 + 7*len(s.Name)
	}
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 || math.IsNaN(v) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func short(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%gM", math.Round(v/1e5)/10)
	case v >= 1e3:
		return fmt.Sprintf("%gk", math.Round(v/1e2)/10)
	}
	return fmt.Sprintf("%g", math.Round(v*100)/100)
}
