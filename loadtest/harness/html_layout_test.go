package harness

import (
	"bytes"
	"fmt"
	"html"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// box is the space a chart element takes, in SVG units.
type box struct {
	what                   string
	left, right, top, bott float64
}

func (a box) overlaps(b box) bool {
	return a.left < b.right && b.left < a.right && a.top < b.bott && b.top < a.bott
}

var (
	svgElem = regexp.MustCompile(`<(text|rect)\s([^>]*)>(?:([^<]*)</text>)?`)
	svgAttr = regexp.MustCompile(`([a-z-]+)="([^"]*)"`)
)

// layoutBoxes estimates the boxes of a chart's texts (from their length,
// font size and anchor, with a generous width per character) and legend
// swatches. Rotated texts (the y axis title) are left out.
func layoutBoxes(t *testing.T, svg string) []box {
	t.Helper()
	var out []box
	for _, m := range svgElem.FindAllStringSubmatch(svg, -1) {
		attrs := map[string]string{}
		for _, a := range svgAttr.FindAllStringSubmatch(m[2], -1) {
			attrs[a[1]] = a[2]
		}
		if attrs["transform"] != "" {
			continue
		}
		num := func(k string) float64 {
			v, err := strconv.ParseFloat(attrs[k], 64)
			if err != nil {
				t.Fatalf("%s %s=%q: %v", m[1], k, attrs[k], err)
			}
			return v
		}
		x, y := num("x"), num("y")
		if m[1] == "rect" {
			out = append(out, box{"legend swatch", x, x + num("width"), y, y + num("height")})
			continue
		}
		text := html.UnescapeString(m[3])
		size := num("font-size")
		perChar := 0.6 * size
		if attrs["font-weight"] != "" {
			perChar = 0.66 * size
		}
		w := perChar * float64(len([]rune(text)))
		left := x
		switch attrs["text-anchor"] {
		case "middle":
			left = x - w/2
		case "end":
			left = x - w
		}
		out = append(out, box{fmt.Sprintf("text %q", text), left, left + w, y - 0.8*size, y + 0.2*size})
	}
	return out
}

// Every chart of the HTML report keeps its texts inside the frame and apart:
// legends clear of the titles (also the long CPU and memory ones), the last
// percentile label not cut at the right edge.
func TestHTMLChartsLayout(t *testing.T) {
	r := &Report{Verdict: "OK", Mode: "embedded dev stack in this process", Started: time.Date(2026, 11, 30, 5, 0, 0, 0, time.UTC)}
	for i := 0; i <= 60; i++ {
		cl := float64(100 * i)
		r.Series = append(r.Series, Sample{T: float64(i), ProduceRate: 20000, IngestRate: 19500, PipelineLag: int64(1000 * i),
			ConsumerLag: &cl, CPUCores: 1.5, RSSBytes: 300 << 20})
	}
	for _, p := range []float64{0, 50, 90, 99, 99.9, 99.99, 100} {
		r.CommitLatencyCDF = append(r.CommitLatencyCDF, CDFPoint{Percentile: p, Value: 100 + 50*p})
	}
	r.Process = &ProcessStats{Label: "the whole process: broker, ingester, aggregator, producers, verifier", PID: 1}
	var buf bytes.Buffer
	if err := r.HTML(&buf); err != nil {
		t.Fatal(err)
	}
	svgs := regexp.MustCompile(`(?s)<svg .*?</svg>`).FindAllString(buf.String(), -1)
	if len(svgs) != 5 {
		t.Fatalf("%d charts, want 5 (throughput, lag, latency, CPU, memory)", len(svgs))
	}
	for _, svg := range svgs {
		boxes := layoutBoxes(t, svg)
		title := boxes[0].what
		for i, a := range boxes {
			if a.left < 0 || a.right > chartW || a.top < 0 || a.bott > chartH {
				t.Errorf("chart %s: %s [%.0f, %.0f] x [%.0f, %.0f] leaves the %dx%d frame", title, a.what, a.left, a.right, a.top, a.bott, chartW, chartH)
			}
			for _, b := range boxes[i+1:] {
				if a.overlaps(b) {
					t.Errorf("chart %s: %s overlaps %s", title, a.what, b.what)
				}
			}
		}
	}
	if !strings.Contains(buf.String(), ">p99.99<") {
		t.Error("the latency chart has no p99.99 label")
	}
}
