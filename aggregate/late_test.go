package aggregate_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/aggregate"
	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/loadtest/gen"
	"github.com/sluicehq/sluice/objstore/objstoretest"
)

// lateBase is a pinned start for the late-data test: its data crosses
// midnight UTC, so the daily window is closed and checked whatever the
// time of day the test runs.
var lateBase = time.Date(2026, 11, 25, 22, 0, 0, 0, time.UTC)

// TestRecomputeReadsObjectsStartingBeforeTheRange: late objects that start
// in the middle of an hour make the aggregator recompute only the windows
// from there on. The on-time objects of that hour start before the
// recomputed range and must be read again, or the recomputed windows would
// hold only the late records. A late batch that crosses midnight also
// changes the two days' windows. Every window size is checked against the
// generators' truth, not against a recomputation by the engine.
func TestRecomputeReadsObjectsStartingBeforeTheRange(t *testing.T) {
	tbl := testkit.SampleTable(t)
	r := tbl.Rollup
	if r.LateHorizon < 90*time.Minute {
		t.Fatalf("the late batches below need a late horizon of 90m, the sample has %s", r.LateHorizon)
	}
	raw, summaries := objstoretest.NewLocal(t), objstoretest.NewLocal(t)
	ctx := context.Background()
	f := newTruthFeeder(t, tbl, raw, 3)
	// 22:00 to 01:00, one commit per hour: hour objects, each starting near
	// the top of its hour.
	for h := range 3 {
		f.write(gen.Config{Seed: int64(30 + h), Start: lateBase.Add(time.Duration(h) * time.Hour), EventsPerSecond: 3000 / 3600.0,
			Users: 2000, NullShare: 0.03}, 3000, 3000, true)
	}
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
