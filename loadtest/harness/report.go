package harness

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/sluicehq/sluice/loadtest/verify"
)

// Report is what a load test found and measured. It marshals to the JSON
// of --report-json.
type Report struct {
	Verdict  string       `json:"verdict"` // OK or FAILED
	Failures []string     `json:"failures,omitempty"`
	Mode     string       `json:"mode"`
	Started  time.Time    `json:"started"`
	Config   ReportConfig `json:"config"`

	Produced ProducedStats `json:"produced"`
	Ingest   IngestStats   `json:"ingest"`
	Lag      LagStats      `json:"lag"`
	Process  *ProcessStats `json:"process,omitempty"`

	AckLatencyMS     Percentiles  `json:"ack_latency_ms"`    // produce call -> broker ack
	CommitLatencyMS  Percentiles  `json:"commit_latency_ms"` // broker ack -> in a commit record
	CommitLatencyCDF []CDFPoint   `json:"commit_latency_cdf_ms,omitempty"`
	SummaryLatencyS  *Percentiles `json:"summary_latency_s,omitempty"` // window end -> summary visible
	CatchUpSeconds   float64      `json:"catch_up_seconds,omitempty"`

	Raw         RawCheck         `json:"raw"`
	DeadLetters DeadLetterCheck  `json:"dead_letters"`
	Summaries   *SummaryCheck    `json:"summaries,omitempty"`
	Aggregator  *AggregatorStats `json:"aggregator,omitempty"`

	Series []Sample `json:"series"`

	// Truth is what was produced, for verifying the stores again (Verify).
	Truth *Truth `json:"-"`
}

// OK reports whether the verifier found nothing wrong.
func (r *Report) OK() bool { return r.Verdict == "OK" }

// ReportConfig echoes the run's settings.
type ReportConfig struct {
	Brokers    []string `json:"brokers"`
	Topic      string   `json:"topic"`
	Rate       float64  `json:"rate"`
	Duration   string   `json:"duration,omitempty"`
	Events     int64    `json:"events,omitempty"`
	Producers  int      `json:"producers"`
	Users      int      `json:"users"`
	ZipfS      float64  `json:"zipf_s"`
	LateShare  float64  `json:"late_share"`
	LateBy     string   `json:"late_by,omitempty"`
	BadShare   float64  `json:"bad_share"`
	NullShare  float64  `json:"null_share"`
	EventBytes int      `json:"event_bytes,omitempty"`
	Seed       int64    `json:"seed"`
	Start      string   `json:"start,omitempty"` // pinned first event time
}

func reportConfig(c Config) ReportConfig {
	rc := ReportConfig{Brokers: c.Brokers, Topic: c.Topic, Rate: c.Rate, Events: c.Events, Producers: c.Producers,
		Users: c.Users, ZipfS: c.ZipfS, LateShare: c.LateShare, BadShare: c.BadShare, NullShare: c.NullShare,
		EventBytes: c.EventBytes, Seed: c.Seed}
	if c.Duration > 0 {
		rc.Duration = c.Duration.String()
	}
	if c.LateBy > 0 {
		rc.LateBy = c.LateBy.String()
	}
	if !c.Start.IsZero() {
		rc.Start = c.Start.UTC().Format(time.RFC3339Nano)
	}
	return rc
}

// ProducedStats are the producers' figures.
type ProducedStats struct {
	Good      int64   `json:"good"`
	Bad       int64   `json:"malformed"`
	Failed    int64   `json:"failed"`
	Bytes     int64   `json:"bytes"`
	Seconds   float64 `json:"seconds"`
	Rate      float64 `json:"rate"` // acknowledged records/s
	Producers int     `json:"producers"`
	// LateBeyondLateness good events were produced later than the rollup's
	// allowed lateness: they reach windows that may be summarised already.
	LateBeyondLateness int64 `json:"late_beyond_lateness"`
}

// IngestStats are the pipeline's figures.
type IngestStats struct {
	Rows         int64   `json:"rows"`
	DeadLetters  int64   `json:"dead_letters"`
	Seconds      float64 `json:"seconds"` // start to the last commit record
	Rate         float64 `json:"rate"`    // committed records/s over Seconds
	DrainSeconds float64 `json:"drain_seconds"`
}

// LagStats sum up the lag series.
type LagStats struct {
	MaxPipeline int64    `json:"max_pipeline"` // acknowledged, not yet committed
	MaxConsumer *float64 `json:"max_consumer,omitempty"`
	// Bounded: while producing, the lag of the second half never rose above
	// 1.5 times the first half's maximum plus one second of the target
	// rate: the pipeline kept up.
	Bounded bool `json:"bounded"`
}

// ProcessStats are the measured process's CPU and memory.
type ProcessStats struct {
	Label                string  `json:"label"`
	PID                  int     `json:"pid"`
	CPUSeconds           float64 `json:"cpu_seconds"`
	AvgCores             float64 `json:"avg_cores"`
	CPUSecondsPerMillion float64 `json:"cpu_seconds_per_million"`
	PeakRSSBytes         int64   `json:"peak_rss_bytes"`
}

// Percentiles of a latency distribution, in the unit the field names.
type Percentiles struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p999"`
	Max   float64 `json:"max"`
}

// CDFPoint is one point of a latency distribution.
type CDFPoint struct {
	Percentile float64 `json:"percentile"`
	Value      float64 `json:"value"`
}

// RawCheck is the raw verifier's outcome.
type RawCheck struct {
	OK                   bool             `json:"ok"`
	Text                 string           `json:"text"`
	ExpectedGood         int64            `json:"expected_good"`
	ExpectedBad          int64            `json:"expected_malformed"`
	Lost                 int64            `json:"lost"`
	Duplicated           int64            `json:"duplicated"`
	Unexpected           int64            `json:"unexpected"`
	Misfiled             int64            `json:"misfiled"`
	ObjectIssues         int64            `json:"object_issues"`
	IssueCounts          map[string]int64 `json:"issue_counts,omitempty"`
	DuplicateEventIDs    int64            `json:"duplicate_event_ids"`
	UnknownEventIDs      int64            `json:"unknown_event_ids"`
	Objects              int              `json:"objects"`
	CommitRecords        int              `json:"commit_records"`
	CommittedRows        int64            `json:"committed_rows"`
	CommittedDeadLetters int64            `json:"committed_dead_letters"`
}

func rawCheck(r verify.Report) RawCheck {
	rc := RawCheck{OK: r.OK(), Text: r.String(), ExpectedGood: r.ExpectedGood, ExpectedBad: r.ExpectedBad,
		Lost: r.Lost.Positions, Duplicated: r.Duplicated.Positions, Unexpected: r.Unexpected.Positions,
		Misfiled: r.Misfiled.Positions, IssueCounts: r.IssueCounts, DuplicateEventIDs: r.DuplicateEventIDs,
		UnknownEventIDs: r.UnknownEventIDs,
		Objects:         r.Objects, CommitRecords: r.Records, CommittedRows: r.CommittedRows, CommittedDeadLetters: r.CommittedDeadLetters}
	for _, n := range r.IssueCounts {
		rc.ObjectIssues += n
	}
	return rc
}

// percentiles reads h, whose values are µs, in units of div µs.
func percentiles(h *hdr.Histogram, div float64) Percentiles {
	return Percentiles{
		Count: h.TotalCount(),
		P50:   float64(h.ValueAtQuantile(50)) / div,
		P90:   float64(h.ValueAtQuantile(90)) / div,
		P99:   float64(h.ValueAtQuantile(99)) / div,
		P999:  float64(h.ValueAtQuantile(99.9)) / div,
		Max:   float64(h.Max()) / div,
	}
}

// cdf samples h at percentiles spread like an HDR plot: dense toward the tail.
func cdf(h *hdr.Histogram, div float64) []CDFPoint {
	if h.TotalCount() == 0 {
		return nil
	}
	var out []CDFPoint
	for _, p := range []float64{0, 10, 20, 30, 40, 50, 60, 70, 75, 80, 85, 90, 92.5, 95, 97, 98, 99, 99.5, 99.9, 99.95, 99.99, 100} {
		out = append(out, CDFPoint{p, float64(h.ValueAtQuantile(p)) / div})
	}
	return out
}

func lagStats(s []Sample, produceSeconds, rate float64) LagStats {
	var ls LagStats
	var firstHalf, secondHalf int64
	for _, x := range s {
		ls.MaxPipeline = max(ls.MaxPipeline, x.PipelineLag)
		if x.ConsumerLag != nil && (ls.MaxConsumer == nil || *x.ConsumerLag > *ls.MaxConsumer) {
			v := *x.ConsumerLag
			ls.MaxConsumer = &v
		}
		switch {
		case x.T <= produceSeconds/2:
			firstHalf = max(firstHalf, x.PipelineLag)
		case x.T <= produceSeconds:
			secondHalf = max(secondHalf, x.PipelineLag)
		}
	}
	if rate == 0 && produceSeconds > 0 {
		var acked int64
		for _, x := range s {
			if x.T <= produceSeconds {
				acked = x.Acked
			}
		}
		rate = float64(acked) / produceSeconds
	}
	ls.Bounded = float64(secondHalf) <= 1.5*float64(firstHalf)+rate
	return ls
}

// JSON writes the report as indented JSON.
func (r *Report) JSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// Text writes the verdict and the figures as a terminal table.
func (r *Report) Text(w io.Writer) {
	fmt.Fprintf(w, "\nLoad test (%s): %s\n", r.Mode, r.Verdict)
	for _, f := range r.Failures {
		fmt.Fprintf(w, "  FAIL %s\n", f)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "  %s\t%s\n", k, v) }
	fmt.Fprintln(tw)
	row("produced", fmt.Sprintf("%s good + %s malformed in %.1fs by %d producers (%s/s, target %s)",
		count(r.Produced.Good), count(r.Produced.Bad), r.Produced.Seconds, r.Produced.Producers,
		count(int64(r.Produced.Rate)), rateName(r.Config.Rate)))
	row("ingested", fmt.Sprintf("%s rows + %s dead letters, %s/s (start to last commit %.1fs); drained %.1fs after producing stopped",
		count(r.Ingest.Rows), count(r.Ingest.DeadLetters), count(int64(r.Ingest.Rate)), r.Ingest.Seconds, r.Ingest.DrainSeconds))
	lag := fmt.Sprintf("max %s records acknowledged but not committed", count(r.Lag.MaxPipeline))
	if r.Lag.MaxConsumer != nil {
		lag += fmt.Sprintf("; max consumer lag %s", count(int64(*r.Lag.MaxConsumer)))
	}
	if r.Lag.Bounded {
		lag += "; bounded (kept up)"
	} else {
		lag += "; GROWING (did not keep up)"
	}
	row("lag", lag)
	row("latency produce -> ack", pctl(r.AckLatencyMS, "ms"))
	row("latency ack -> committed", pctl(r.CommitLatencyMS, "ms"))
	if r.SummaryLatencyS != nil {
		row("latency window end -> summary", pctl(*r.SummaryLatencyS, "s")+" (includes the allowed lateness)")
	}
	if p := r.Process; p != nil {
		row("process", fmt.Sprintf("%s (pid %d)", p.Label, p.PID))
		row("  CPU", fmt.Sprintf("%.1f s (%.2f cores on average, %.2f CPU-s per million records)", p.CPUSeconds, p.AvgCores, p.CPUSecondsPerMillion))
		row("  peak RSS", fmt.Sprintf("%.0f MiB", float64(p.PeakRSSBytes)/(1<<20)))
	}
	raw := "OK"
	if !r.Raw.OK {
		raw = "FAILED"
	}
	row("raw data", fmt.Sprintf("%s: %d lost, %d duplicated, %d unexpected, %d misfiled, %d object issues (%d objects, %d commit records)",
		raw, r.Raw.Lost, r.Raw.Duplicated, r.Raw.Unexpected, r.Raw.Misfiled, r.Raw.ObjectIssues, r.Raw.Objects, r.Raw.CommitRecords))
	reasons := make([]string, 0, len(r.DeadLetters.ByReason))
	for k, v := range r.DeadLetters.ByReason {
		reasons = append(reasons, fmt.Sprintf("%s %d", k, v))
	}
	slices.Sort(reasons)
	row("dead letters", fmt.Sprintf("%d lines, %d reasons checked, %d wrong (%s)", r.DeadLetters.Lines, r.DeadLetters.Checked,
		r.DeadLetters.WrongReason, strings.Join(reasons, ", ")))
	if s := r.Summaries; s != nil {
		row("summaries", fmt.Sprintf("watermark %s; aggregator caught up %.1fs after ingest", s.Watermark.Format(time.RFC3339), r.CatchUpSeconds))
		for _, wc := range s.Windows {
			row("  "+wc.Window, fmt.Sprintf("%d closed: %d verified against the generators' truth, %d wrong; %d still open; %d groups checked",
				wc.Closed, wc.Verified, wc.Failed, wc.Open, wc.Groups))
		}
	}
	if a := r.Aggregator; a != nil {
		byWindow := make([]string, 0, len(a.RecomputedByWindow))
		for k, v := range a.RecomputedByWindow {
			byWindow = append(byWindow, fmt.Sprintf("%s %d", k, v))
		}
		slices.Sort(byWindow)
		row("aggregator", fmt.Sprintf("%d windows summarised, %d recomputed for late data (%s), %d frozen windows got %d too-late records; %d events produced later than the allowed lateness",
			a.Summarised, a.Recomputed, strings.Join(byWindow, ", "), a.Late, a.TooLateRecords, r.Produced.LateBeyondLateness))
	}
	tw.Flush()
	if !r.Raw.OK {
		fmt.Fprintf(w, "\n%s\n", r.Raw.Text)
	}
	for _, f := range r.DeadLetters.Failures {
		fmt.Fprintf(w, "  %s\n", f)
	}
	if r.Summaries != nil {
		for _, f := range r.Summaries.Failures {
			fmt.Fprintf(w, "  %s\n", f)
		}
	}
}

func rateName(r float64) string {
	if r == 0 {
		return "flat out"
	}
	return count(int64(r)) + "/s"
}

func pctl(p Percentiles, unit string) string {
	if p.Count == 0 {
		return "no samples"
	}
	f := func(v float64) string {
		if unit == "s" {
			return fmt.Sprintf("%.1f%s", v, unit)
		}
		return fmt.Sprintf("%.0f%s", v, unit)
	}
	return fmt.Sprintf("p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (%s samples)", f(p.P50), f(p.P90), f(p.P99), f(p.P999), f(p.Max), count(p.Count))
}
