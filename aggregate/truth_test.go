package aggregate_test

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/sluicehq/sluice/aggregate"
	"github.com/sluicehq/sluice/schema"
	"github.com/sluicehq/sluice/sink"
)

// truthGroup is what the feeder produced for one (window, event_type,
// country) group of the sample table's rollup.
type truthGroup struct {
	n          int64
	sum        float64
	lo, hi     float64
	latencies  []float64
	users      map[string]bool
	eventType  string
	country    string // "" is null
	start, end int64
}

// truthKey names a group by window start and the sample table's dimensions.
func truthKey(start int64, eventType string, country any) string {
	return fmt.Sprintf("%d|%s|%v", start, eventType, country)
}

// checkAgainstTruth compares every summary object of every window size of
// the sample table with what the feeder produced (the events in events),
// independently of the engine's layout, grouping and value code: every
// closed window (ending at or before wm) that received events must be
// there with exactly its groups; count, sum, min and max exact, the
// quantiles within the sketch's relative accuracy and distinct users
// within the HyperLogLog's error. It returns the windows checked per size
// and fails if any window size has none.
func checkAgainstTruth(t *testing.T, tbl *schema.Table, summaries sink.Bucket, events []producedEvent, wm time.Time) map[time.Duration]int {
	t.Helper()
	ctx := context.Background()
	r := tbl.Rollup
	idx := map[schema.MeasureKind]int{}
	var quant, users schema.Measure
	for i, m := range r.Measures {
		idx[m.Kind] = i
		switch m.Kind {
		case schema.KindQuantiles:
			quant = m
		case schema.KindDistinct:
			users = m
		}
	}
	if len(idx) != len(r.Measures) || len(idx) != 7 || len(r.Dimensions) != 2 {
		t.Fatalf("checkAgainstTruth knows the sample rollup (one measure of each kind, two dimensions), not %+v", r)
	}
	checked := map[time.Duration]int{}
	for _, w := range r.Windows {
		wu := w.Microseconds()
		truth := map[string]*truthGroup{}
		for _, ev := range events {
			us := ev.ts.UnixMicro()
			start := us - ((us%wu)+wu)%wu
			if start+wu > wm.UnixMicro() {
				continue // window not closed
			}
			var country any
			if ev.country != "" {
				country = ev.country
			}
			k := truthKey(start, ev.eventType, country)
			g := truth[k]
			if g == nil {
				g = &truthGroup{lo: math.Inf(1), hi: math.Inf(-1), users: map[string]bool{},
					eventType: ev.eventType, country: ev.country, start: start, end: start + wu}
				truth[k] = g
			}
			g.n++
			g.sum += ev.amount
			g.lo = min(g.lo, ev.amount)
			g.hi = max(g.hi, ev.amount)
			g.latencies = append(g.latencies, float64(ev.latency))
			g.users[ev.user] = true
		}
		seen := map[string]bool{}
		prefix := tbl.Name + "/" + aggregate.WindowName(w) + "/"
		err := summaries.Iter(ctx, prefix, func(a sink.ObjectAttrs) error {
			data := readAll(t, summaries, a.Key)
			sum, err := aggregate.ReadSummary(bytes.NewReader(data), int64(len(data)), tbl)
			if err != nil {
				return err
			}
			checked[w] += len(sum.Windows())
			for i := range sum.Rows {
				row := &sum.Rows[i]
				if len(row.Dims) != 2 {
					return fmt.Errorf("%s: row has %d dimensions, want 2", a.Key, len(row.Dims))
				}
				et, _ := row.Dims[0].(string)
				k := truthKey(row.Start, et, row.Dims[1])
				g := truth[k]
				if g == nil {
					return fmt.Errorf("%s: group %s: not produced (or its window is not closed)", a.Key, k)
				}
				seen[k] = true
				if err := checkGroup(row, g, idx, quant, users); err != nil {
					return fmt.Errorf("%s: group %s: %w", a.Key, k, err)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for k, g := range truth {
			if !seen[k] {
				t.Fatalf("%s window %s: group %s (%d events) is missing from the summaries",
					aggregate.WindowName(w), time.UnixMicro(g.start).UTC().Format(time.RFC3339), k, g.n)
			}
		}
		if checked[w] == 0 {
			t.Fatalf("no %s window was checked: the test data must close at least one", aggregate.WindowName(w))
		}
	}
	return checked
}

func checkGroup(row *aggregate.Row, g *truthGroup, idx map[schema.MeasureKind]int, quant, users schema.Measure) error {
	if row.End != g.end || row.N != g.n {
		return fmt.Errorf("end %d rows %d, produced end %d rows %d", row.End, row.N, g.end, g.n)
	}
	if got := row.M[idx[schema.KindCount]].Count(); got != g.n {
		return fmt.Errorf("count %d, produced %d", got, g.n)
	}
	// The engine sums exactly and rounds once; the truth adds in
	// production order, so allow for its own rounding only.
	if got := row.M[idx[schema.KindSum]].SumFloat(); math.Abs(got-g.sum) > 1e-9*math.Max(1, math.Abs(g.sum)) {
		return fmt.Errorf("amount sum %v, produced %v", got, g.sum)
	}
	if lo, _, ok := row.M[idx[schema.KindMin]].MinMaxFloat(); !ok || lo != g.lo {
		return fmt.Errorf("amount min %v (%v), produced %v", lo, ok, g.lo)
	}
	if _, hi, ok := row.M[idx[schema.KindMax]].MinMaxFloat(); !ok || hi != g.hi {
		return fmt.Errorf("amount max %v (%v), produced %v", hi, ok, g.hi)
	}
	if got := row.M[idx[schema.KindAvg]].SumFloat() / float64(row.M[idx[schema.KindAvg]].Count()); math.Abs(got-g.sum/float64(g.n)) > 1e-9*math.Max(1, math.Abs(got)) {
		return fmt.Errorf("amount avg %v, produced %v", got, g.sum/float64(g.n))
	}
	slices.Sort(g.latencies)
	qs := &row.M[idx[schema.KindQuantiles]]
	for _, q := range quant.Quantiles {
		got, ok := qs.Quantile(q)
		if !ok {
			return fmt.Errorf("latency p%v missing", q*100)
		}
		// The true quantile at rank q(n-1), within the sketch's relative
		// accuracy (either neighbour when the rank falls between values).
		rank := q * float64(len(g.latencies)-1)
		near := func(v float64) bool { return math.Abs(got-v) <= quant.RelativeAccuracy*v+1e-9 }
		if !near(g.latencies[int(math.Floor(rank))]) && !near(g.latencies[int(math.Ceil(rank))]) {
			return fmt.Errorf("latency p%v = %v, produced %v..%v (relative accuracy %v)", q*100, got,
				g.latencies[int(math.Floor(rank))], g.latencies[int(math.Ceil(rank))], quant.RelativeAccuracy)
		}
	}
	// HyperLogLog: 1.04/sqrt(2^precision) standard error; allow four of them
	// and one for tiny counts.
	distinct := float64(row.M[idx[schema.KindDistinct]].Distinct())
	want := float64(len(g.users))
	if math.Abs(distinct-want) > 1+4*1.04/math.Sqrt(float64(uint64(1)<<users.Precision))*want {
		return fmt.Errorf("distinct users %v, produced %v", distinct, want)
	}
	return nil
}
