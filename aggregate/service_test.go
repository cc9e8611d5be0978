package aggregate_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/aggregate"
	"github.com/sluicehq/sluice/aggregate/aggtest"
	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/internal/testkit/ingesttest"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/objstore/objstoretest"
	"github.com/sluicehq/sluice/schema"
)

// feeder writes random sample events through the real ingest writer,
// committing one flush at a time.
type feeder struct {
	*ingesttest.Feeder
	rng *rand.Rand
}

func newFeeder(t *testing.T, raw objstore.Bucket, partitions int) *feeder {
	return &feeder{Feeder: ingesttest.NewFeeder(t, raw, testkit.SampleTable(t), partitions), rng: rand.New(rand.NewPCG(7, 11))}
}

var (
	eventTypes = []string{"page_view", "page_view", "page_view", "click", "click", "search", "add_to_cart", "purchase"}
	countries  = []string{"US", "US", "US", "DE", "DE", "GB", "FR", "JP", "BR", "IN"}
)

// add appends n events with event times uniform in [from, to) to a random
// partition each, with skewed dimensions and some null countries.
func (f *feeder) add(n int, from, to time.Time) {
	span := to.Sub(from).Microseconds()
	for range n {
		p := f.rng.IntN(f.Partitions())
		ts := from.Add(time.Duration(f.rng.Int64N(span)) * time.Microsecond)
		country := `"` + countries[f.rng.IntN(len(countries))] + `"`
		if f.rng.IntN(20) == 0 {
			country = "null"
		}
		v := fmt.Appendf(nil, `{"ts":%q,"event_id":"e%d","user_id":"u%d","event_type":%q,"country":%s,"device":"mobile","amount":%.2f,"latency_ms":%d,"ok":true}`,
			ts.UTC().Format(time.RFC3339Nano), f.rng.Int64(), f.rng.IntN(500)*f.rng.IntN(3), eventTypes[f.rng.IntN(len(eventTypes))], country,
			f.rng.Float64()*100, f.rng.IntN(2000))
		f.Append(p, v)
	}
}

// checkAgainstRaw recomputes every summary object of every window size
// exactly from the committed raw objects (minus those excluded: records
// that came too late) and compares.
func checkAgainstRaw(t *testing.T, tbl *schema.Table, raw, summaries objstore.Bucket, exclude map[string]bool) (windows int) {
	t.Helper()
	ctx := context.Background()
	live, err := lake.NewCommitLog(raw).LiveObjects(ctx, tbl.Name)
	if err != nil {
		t.Fatal(err)
	}
	var objects [][]byte
	for _, o := range live {
		if exclude[o.Key] {
			continue
		}
		objects = append(objects, readAll(t, raw, o.Key))
	}
	for _, w := range tbl.Rollup.Windows {
		prefix := tbl.Name + "/" + aggregate.WindowName(w) + "/"
		err := summaries.Iter(ctx, prefix, func(a objstore.ObjectAttrs) error {
			data := readAll(t, summaries, a.Key)
			sum, err := aggregate.ReadSummary(bytes.NewReader(data), int64(len(data)), tbl)
			if err != nil {
				return err
			}
			starts := sum.Windows()
			if len(starts) == 0 {
				return nil
			}
			from, to := time.UnixMicro(starts[0]), time.UnixMicro(starts[len(starts)-1]).Add(w)
			ex, err := aggtest.ExactRecompute(tbl, w, from, to, objects...)
			if err != nil {
				return err
			}
			if err := ex.Check(tbl, sum); err != nil {
				return fmt.Errorf("%s: %w", a.Key, err)
			}
			windows += len(starts)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return windows
}

func readAll(t *testing.T, b objstore.Bucket, key string) []byte {
	t.Helper()
	rc, err := b.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func newService(t *testing.T, raw, summaries objstore.Bucket, owner string, reg prometheus.Registerer) *aggregate.Service {
	t.Helper()
	svc, err := aggregate.NewService(aggregate.Config{Interval: 200 * time.Millisecond, Lease: 2 * time.Second}, raw, summaries,
		[]*schema.Table{testkit.SampleTable(t)}, owner, slog.New(slog.DiscardHandler), aggregate.NewMetrics(reg))
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// Done-when 1 of the aggregation issue: random events through the ingest
// writer, summaries checked window by window against an exact recomputation,
// then again after late data (recomputed within the horizon, counted as too
// late beyond it) and for the coarser windows built from finer ones.
func TestSummariesExactUnderLateData(t *testing.T) {
	tbl := testkit.SampleTable(t)
	raw, summaries := objstoretest.NewLocal(t), objstoretest.NewLocal(t)
	ctx := context.Background()
	// Pinned, and crossing midnight UTC: the daily window is closed and
	// checked whatever the time of day the test runs.
	base := time.Date(2026, 11, 25, 21, 0, 0, 0, time.UTC)
	f := newFeeder(t, raw, 4)

	// Four hours of data; the watermark ends near base+4h.
	for h := range 4 {
		f.add(6000, base.Add(time.Duration(h)*time.Hour), base.Add(time.Duration(h+1)*time.Hour))
		f.Commit()
	}
	svc := newService(t, raw, summaries, "a", prometheus.NewRegistry())
	st, err := svc.RunOnce(ctx, tbl)
	if err != nil {
		t.Fatal(err)
	}
	if st.Computed == 0 || st.Recomputed != 0 {
		t.Fatalf("first run: %+v", st)
	}
	n := checkAgainstRaw(t, tbl, raw, summaries, nil)
	t.Logf("first run: %+v; %d windows checked", st, n)

	// A rerun over unchanged inputs changes nothing. (It looks at no
	// window at all: no link is new and no window closed since the run
	// cursor; TestRunCostFollowsChange counts its calls.)
	st, err = svc.RunOnce(ctx, tbl)
	if err != nil {
		t.Fatal(err)
	}
	if st.Computed != 0 || st.Recomputed != 0 || st.Objects != 0 || st.RowsRead != 0 {
		t.Fatalf("rerun should skip everything: %+v", st)
	}

	// Late data within the horizon (last hour) recomputes its windows; late
	// data beyond it (first hour) only counts as too late. Each goes in its
	// own flush so the test knows which objects hold too-late records.
	f.add(500, base.Add(3*time.Hour), base.Add(3*time.Hour+50*time.Minute))
	f.Commit()
	live0, err := lake.NewCommitLog(raw).LiveObjects(ctx, tbl.Name)
	if err != nil {
		t.Fatal(err)
	}
	before := map[string]bool{}
	for _, o := range live0 {
		before[o.Key] = true
	}
	f.add(300, base.Add(5*time.Minute), base.Add(40*time.Minute))
	f.Commit()
	live1, err := lake.NewCommitLog(raw).LiveObjects(ctx, tbl.Name)
	if err != nil {
		t.Fatal(err)
	}
	tooLate := map[string]bool{}
	for _, o := range live1 {
		if !before[o.Key] {
			tooLate[o.Key] = true
		}
	}
	st, err = svc.RunOnce(ctx, tbl)
	if err != nil {
		t.Fatal(err)
	}
	if st.Recomputed == 0 || st.TooLate != 300 || st.Late == 0 {
		t.Fatalf("after late data: %+v (want recomputed windows and 300 too-late records)", st)
	}
	n = checkAgainstRaw(t, tbl, raw, summaries, tooLate)
	t.Logf("after late data: %+v; %d windows checked", st, n)
}

// Done-when 2: two aggregators on the same stores at once produce the same,
// correct summaries as one.
func TestTwoAggregatorsAtOnce(t *testing.T) {
	tbl := testkit.SampleTable(t)
	raw := objstoretest.NewLocal(t)
	// Pinned, and crossing midnight UTC: the daily window is closed.
	base := time.Date(2026, 11, 25, 23, 0, 0, 0, time.UTC)
	f := newFeeder(t, raw, 3)
	f.add(8000, base, base.Add(90*time.Minute))
	f.Commit()

	// The reference: one aggregator alone.
	alone := objstoretest.NewLocal(t)
	if _, err := newService(t, raw, alone, "solo", prometheus.NewRegistry()).RunOnce(context.Background(), tbl); err != nil {
		t.Fatal(err)
	}

	shared := objstoretest.NewLocal(t)
	reg := prometheus.NewRegistry()
	am := aggregate.NewMetrics(reg) // the two services count together, as in one process
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	for _, owner := range []string{"a", "z"} {
		// Leases long enough for a whole run under the race detector on a
		// loaded machine: a run cut short by its lease starts over.
		svc, err := aggregate.NewService(aggregate.Config{Interval: 200 * time.Millisecond, Lease: 5 * time.Second}, raw, shared,
			[]*schema.Table{tbl}, owner, slog.New(slog.DiscardHandler), am)
		if err != nil {
			t.Fatal(err)
		}
		go func() { done <- svc.Run(ctx) }()
	}
	// More data arrives while both run.
	time.Sleep(700 * time.Millisecond)
	f.add(2000, base.Add(90*time.Minute), base.Add(100*time.Minute))
	f.Commit()
	// And once more into the same windows, once one of the pair (whichever
	// holds the lease) has summarised the second batch: the pair must
	// recompute them. Waiting for the summary, not for a fixed time: on a
	// loaded machine the pair's first runs take longer.
	secondBatch := tbl.Name + "/1m/dt=2026-11-26/hour=00.parquet"
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := shared.Attributes(ctx, secondBatch); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the pair never summarised the second batch (%s)", secondBatch)
		}
	}
	recomputed := windowsCounted(t, reg, "recomputed")
	f.add(1000, base, base.Add(100*time.Minute))
	f.Commit()
	for deadline := time.Now().Add(30 * time.Second); windowsCounted(t, reg, "recomputed") <= recomputed; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the pair never recomputed the windows that received more data")
		}
	}
	cancel()
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	// Bring the reference up to date with the same inputs.
	if _, err := newService(t, raw, alone, "solo", prometheus.NewRegistry()).RunOnce(context.Background(), tbl); err != nil {
		t.Fatal(err)
	}
	// The pair's last word may predate the last data; one more run by either
	// settles it, as the next scheduled run would.
	if _, err := newService(t, raw, shared, "a", prometheus.NewRegistry()).RunOnce(context.Background(), tbl); err != nil {
		t.Fatal(err)
	}
	got := listObjects(t, shared, tbl.Name+"/")
	want := listObjects(t, alone, tbl.Name+"/")
	if len(got) != len(want) || len(want) == 0 {
		t.Fatalf("two aggregators wrote %d summary objects, one wrote %d", len(got), len(want))
	}
	for k, w := range want {
		if !bytes.Equal(got[k], w) {
			t.Errorf("summary %s differs between the pair and the single aggregator", k)
		}
	}
	checkAgainstRaw(t, tbl, raw, shared, nil)
}

// windowsCounted is the sample table's sluice_aggregate_windows_total of
// outcome, over every window size, as gathered from reg.
func windowsCounted(t *testing.T, reg prometheus.Gatherer, outcome string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() != "sluice_aggregate_windows_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" && l.GetValue() == outcome {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return n
}

func listObjects(t *testing.T, b objstore.Bucket, prefix string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := b.Iter(context.Background(), prefix, func(a objstore.ObjectAttrs) error {
		if !strings.HasPrefix(a.Key, lake.LocksRoot) {
			out[a.Key] = readAll(t, b, a.Key)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
