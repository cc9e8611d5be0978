package aggregate_test

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/aggregate"
	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/loadtest/gen"
	"github.com/sluicehq/sluice/objstore/objstoretest"
)

// lateBase is a pinned start for the late-data test: its data crosses
// midnight UTC, so the daily window is closed and checked whatever the
// time of day the test runs.
var lateBase = time.Date(2026, 11, 25, 22, 0, 0, 0, time.UTC)

// writeOnTimeHours writes 3,000 events in each of the three hours from
// lateBase (22:00 to 01:00), one commit per hour: hour objects, each
// starting near the top of its hour.
func writeOnTimeHours(f *truthFeeder, seed int64) {
	for h := range int64(3) {
		f.write(gen.Config{Seed: seed + h, Start: lateBase.Add(time.Duration(h) * time.Hour), EventsPerSecond: 3000 / 3600.0,
			Users: 2000, NullShare: 0.03}, 3000, 3000, true)
	}
}

// TestLateBatchesMidHourAndAcrossMidnight: late objects that start in the
// middle of an hour bring up to date only the windows from there on, and
// those windows must keep the on-time records of that hour too (which
// objects starting before the range hold). A late batch that crosses
// midnight also changes the two days' windows. Every window size is
// checked against the generators' truth, not against a recomputation by
// the engine.
func TestLateBatchesMidHourAndAcrossMidnight(t *testing.T) {
	tbl := testkit.SampleTable(t)
	r := tbl.Rollup
	if r.LateHorizon < 90*time.Minute {
		t.Fatalf("the late batches below need a late horizon of 90m, the sample has %s", r.LateHorizon)
	}
	raw, summaries := objstoretest.NewLocal(t), objstoretest.NewLocal(t)
	ctx := context.Background()
	f := newTruthFeeder(t, tbl, raw, 3)
	writeOnTimeHours(f, 30)
	svc := newService(t, raw, summaries, "a", prometheus.NewRegistry())
	st, err := svc.RunOnce(ctx, tbl)
	if err != nil {
		t.Fatal(err)
	}
	if st.Computed == 0 || st.Recomputed != 0 {
		t.Fatalf("first run: %+v", st)
	}
	wm := f.watermark(r.AllowedLateness)
	checkAgainstTruth(t, tbl, summaries, f.truth, wm)

	// Late, within the horizon: one batch from 23:40 (mid-hour) to 23:50,
	// one from 23:55 across midnight to 00:20.
	f.write(gen.Config{Seed: 40, Start: lateBase.Add(100 * time.Minute), EventsPerSecond: 400 / 600.0, Users: 2000}, 400, 400, true)
	f.write(gen.Config{Seed: 41, Start: lateBase.Add(115 * time.Minute), EventsPerSecond: 400 / 1500.0, Users: 2000}, 400, 400, true)
	st, err = svc.RunOnce(ctx, tbl)
	if err != nil {
		t.Fatal(err)
	}
	if st.Recomputed == 0 || st.TooLate != 0 || st.Late != 0 {
		t.Fatalf("after late data within the horizon: %+v (want recomputed windows, none too late)", st)
	}
	checked := checkAgainstTruth(t, tbl, summaries, f.truth, wm)
	for _, w := range r.Windows {
		if checked[w] == 0 {
			t.Errorf("no closed %s window compared", aggregate.WindowName(w))
		}
	}
	t.Logf("after late data: %+v; windows compared %v", st, checked)
}

// TestLateDataMergedWithoutRereadingTheWindow: a summarised window that
// gets late records within the horizon reads only the objects that hold
// them, and merges their rows into its own; the summaries still match the
// generators' truth. When the late records' objects were compacted
// together with rows the summaries already hold, merging would count
// those twice: the windows are recomputed from every live object instead.
func TestLateDataMergedWithoutRereadingTheWindow(t *testing.T) {
	tbl := testkit.SampleTable(t)
	r := tbl.Rollup
	raw, summaries := objstoretest.NewLocal(t), objstoretest.NewLocal(t)
	ctx := context.Background()
	f := newTruthFeeder(t, tbl, raw, 3)
	writeOnTimeHours(f, 50)
	svc := newService(t, raw, summaries, "a", prometheus.NewRegistry())
	if _, err := svc.RunOnce(ctx, tbl); err != nil {
		t.Fatal(err)
	}
	wm := f.watermark(r.AllowedLateness)

	// 400 late records, 23:40 to 23:50: every window they touch is summarised.
	f.write(gen.Config{Seed: 60, Start: lateBase.Add(100 * time.Minute), EventsPerSecond: 400 / 600.0, Users: 2000}, 400, 400, true)
	st, err := svc.RunOnce(ctx, tbl)
	if err != nil {
		t.Fatal(err)
	}
	if st.Recomputed == 0 || st.RowsRead != 400 {
		t.Fatalf("after 400 late records: %+v (want windows brought up to date from the 400 rows alone)", st)
	}
	checkAgainstTruth(t, tbl, summaries, f.truth, wm)
	// The merged summaries are the bytes one pass over everything writes.
	onePass := objstoretest.NewLocal(t)
	if _, err := newService(t, raw, onePass, "b", prometheus.NewRegistry()).RunOnce(ctx, tbl); err != nil {
		t.Fatal(err)
	}
	for _, w := range r.Windows {
		prefix := tbl.Name + "/" + aggregate.WindowName(w) + "/"
		keys := objstoretest.ListKeys(t, onePass, prefix)
		if got := objstoretest.ListKeys(t, summaries, prefix); !slices.Equal(got, keys) {
			t.Fatalf("%s summaries: merged run wrote %v, one pass %v", aggregate.WindowName(w), got, keys)
		}
		for _, k := range keys {
			if got, want := readAll(t, summaries, k), readAll(t, onePass, k); !bytes.Equal(got, want) {
				t.Errorf("%s: the merged summary differs from one pass over the same objects", k)
			}
		}
	}

	// 300 more, 23:32 to 23:37, then the closed hours are compacted: the
	// late rows now share objects with rows the summaries hold.
	f.write(gen.Config{Seed: 61, Start: lateBase.Add(92 * time.Minute), EventsPerSecond: 300 / 300.0, Users: 2000}, 300, 300, true)
	c, err := aggregate.NewCompactor(aggregate.CompactorConfig{CloseDelay: time.Minute}, raw, lake.NewCommitLog(raw),
		slog.New(slog.DiscardHandler), aggregate.NewMetrics(prometheus.NewRegistry()))
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.CompactTable(ctx, tbl, lateBase.Add(6*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("compaction: %+v", res)
	st, err = svc.RunOnce(ctx, tbl)
	if err != nil {
		t.Fatal(err)
	}
	if st.Recomputed == 0 || st.RowsRead <= 300 {
		t.Fatalf("after late records compacted with others: %+v (want the windows recomputed from the compacted objects)", st)
	}
	checkAgainstTruth(t, tbl, summaries, f.truth, wm)
}

// TestCommitDuringTheFirstRunIsCountedOnce: a link committed while the
// first run reads the lake (between its reading of the chains and of the
// live objects, where those were two reads) must not reach a summary whose
// recorded links leave it out: the next run would merge its rows in again.
func TestCommitDuringTheFirstRunIsCountedOnce(t *testing.T) {
	tbl := testkit.SampleTable(t)
	raw, summaries := objstoretest.NewLocal(t), objstoretest.NewLocal(t)
	ctx := context.Background()
	f := newTruthFeeder(t, tbl, raw, 3)
	writeOnTimeHours(f, 70)
	wm := f.watermark(tbl.Rollup.AllowedLateness)
	hooked := objstoretest.NewHookBucket(raw)
	committed := false
	hooked.Before = func(op, key string) error {
		if op == "iter" && strings.HasPrefix(key, lake.CompactionsRoot) && !committed {
			committed = true // late records for summarised windows, 23:40 to 23:50
			f.write(gen.Config{Seed: 80, Start: lateBase.Add(100 * time.Minute), EventsPerSecond: 400 / 600.0, Users: 2000}, 400, 400, true)
		}
		return nil
	}
	svc := newService(t, hooked, summaries, "a", prometheus.NewRegistry())
	for run := range 2 {
		if _, err := svc.RunOnce(ctx, tbl); err != nil {
			t.Fatalf("run %d: %v", run+1, err)
		}
	}
	if !committed {
		t.Fatal("the aggregator never listed compaction records: the commit was not made during its run")
	}
	checkAgainstTruth(t, tbl, summaries, f.truth, wm)
}
