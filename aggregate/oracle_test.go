package aggregate_test

import (
	"context"
	"hash/fnv"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/aggregate"
	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/loadtest/gen"
	"github.com/sluicehq/sluice/loadtest/oracle"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/objstore/objstoretest"
	"github.com/sluicehq/sluice/schema"
)

// oracleBase is pinned, not taken from the clock, so that every run covers
// the same hour and day boundaries: the data runs from 21:30 on one day to
// past midnight of the next.
var oracleBase = time.Date(2026, 3, 14, 21, 30, 0, 0, time.UTC)

// truthFeeder writes generated events through the real ingest writer,
// keyed by user as Kafka would partition them, and keeps the generators'
// truth of what it wrote and each partition's latest event time.
type truthFeeder struct {
	*feeder
	t        *testing.T
	truth    *gen.Truth
	maxEvent []int64 // per partition, µs
}

func newTruthFeeder(t *testing.T, tbl *schema.Table, raw objstore.Bucket, partitions int) *truthFeeder {
	truth, err := gen.NewTruth(tbl.Rollup.Windows...)
	if err != nil {
		t.Fatal(err)
	}
	tf := &truthFeeder{feeder: newFeeder(t, raw, partitions), t: t, truth: truth, maxEvent: make([]int64, partitions)}
	for i := range tf.maxEvent {
		tf.maxEvent[i] = math.MinInt64
	}
	return tf
}

// write generates n events of cfg and writes them, committing every
// commitEvery events and at the end. Events that keep is false for are
// written but left out of the truth (records the summaries must not count).
func (f *truthFeeder) write(cfg gen.Config, n, commitEvery int, keep bool) {
	g, err := gen.New(cfg)
	if err != nil {
		f.t.Fatal(err)
	}
	var buf []byte
	for i := range n {
		value, key, ev := g.Next(buf[:0])
		buf = value
		h := fnv.New32a()
		h.Write(key)
		p := int(h.Sum32() % uint32(f.Partitions()))
		f.Append(p, append([]byte(nil), value...))
		f.maxEvent[p] = max(f.maxEvent[p], ev.TS.UnixMicro())
		if keep {
			f.truth.Add(&ev)
		}
		if (i+1)%commitEvery == 0 {
			f.Commit()
		}
	}
	f.Commit()
}

// watermark is the table's watermark worked out from what was written:
// the slowest partition's latest event time, plus 1µs, minus the allowed
// lateness.
func (f *truthFeeder) watermark(lateness time.Duration) int64 {
	m := int64(math.MaxInt64)
	for _, e := range f.maxEvent {
		m = min(m, e)
	}
	return m + 1 - lateness.Microseconds()
}

// checkAgainstTruth reads every summary object of every window size as a
// user would (the Parquet files under <table>/<window>/) and compares every
// window closed by until with the generators' truth. It returns the
// windows compared by size.
func checkAgainstTruth(t *testing.T, tbl *schema.Table, summaries objstore.Bucket, truth *gen.Truth, until int64) map[time.Duration]int {
	t.Helper()
	cols, err := oracle.ColumnsFor(tbl)
	if err != nil {
		t.Fatal(err)
	}
	checked := map[time.Duration]int{}
	for _, w := range tbl.Rollup.Windows {
		rows := oracle.Rows{}
		prefix := tbl.Name + "/" + aggregate.WindowName(w) + "/"
		err := summaries.Iter(context.Background(), prefix, func(a objstore.ObjectAttrs) error {
			if !strings.HasSuffix(a.Key, ".parquet") {
				return nil
			}
			return cols.Read(rows, a.Key, readAll(t, summaries, a.Key))
		})
		if err != nil {
			t.Fatal(err)
		}
		res := cols.Check(truth, w, rows, until)
		for _, f := range res.Failures {
			t.Error(f)
		}
		checked[w] = res.Checked
	}
	return checked
}

// Summaries equal what the generators produced, measure by measure, for
// every window size, after the first run, after late data within the
// horizon (recomputed) and after data beyond it (counted as too late and
// left out).
func TestSummariesMatchGeneratorTruth(t *testing.T) {
	tbl := testkit.SampleTable(t)
	raw, summaries := objstoretest.NewLocal(t), objstoretest.NewLocal(t)
	ctx := context.Background()
	r := tbl.Rollup
	f := newTruthFeeder(t, tbl, raw, 4)

	// Three hours of events, 5% of them up to 20 minutes late.
	const n = 24000
	f.write(gen.Config{Seed: 11, Start: oracleBase, EventsPerSecond: n / (3 * 3600.0), Users: 3000,
		LateShare: 0.05, LateBy: 20 * time.Minute, NullShare: 0.03}, n, 1500, true)
	svc := newService(t, raw, summaries, "a", prometheus.NewRegistry())
	st, err := svc.RunOnce(ctx, tbl)
	if err != nil {
		t.Fatal(err)
	}
	wm := f.watermark(r.AllowedLateness)
	if st.Watermark.UnixMicro() != wm {
		t.Fatalf("aggregator's watermark %s, the data's %s", st.Watermark, time.UnixMicro(wm).UTC())
	}
	checked := checkAgainstTruth(t, tbl, summaries, f.truth, wm)
	for _, w := range r.Windows {
		if checked[w] == 0 {
			t.Errorf("no closed %s window compared", aggregate.WindowName(w))
		}
	}
	t.Logf("first run: %+v; windows compared %v", st, checked)

	// Late data, later than the allowed lateness but within the horizon:
	// events 40 to 35 minutes behind the watermark land in summarised
	// windows, which are recomputed.
	f.write(gen.Config{Seed: 12, Start: time.UnixMicro(wm).Add(-40 * time.Minute), EventsPerSecond: 1, Users: 3000},
		300, 100, true)
	st, err = svc.RunOnce(ctx, tbl)
	if err != nil {
		t.Fatal(err)
	}
	if st.Recomputed == 0 || st.TooLate != 0 {
		t.Fatalf("after late data within the horizon: %+v (want recomputed windows, nothing too late)", st)
	}
	checkAgainstTruth(t, tbl, summaries, f.truth, wm)

	// Data beyond the horizon stays out of the summaries.
	f.write(gen.Config{Seed: 13, Start: time.UnixMicro(wm).Add(-r.LateHorizon - time.Hour), EventsPerSecond: 1, Users: 3000},
		200, 200, false)
	st, err = svc.RunOnce(ctx, tbl)
	if err != nil {
		t.Fatal(err)
	}
	if st.TooLate != 200 {
		t.Fatalf("after data beyond the horizon: %+v (want 200 records too late)", st)
	}
	checked = checkAgainstTruth(t, tbl, summaries, f.truth, wm)
	t.Logf("after late data: windows compared %v", checked)
}
