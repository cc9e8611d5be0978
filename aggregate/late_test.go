package aggregate_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// lateBase is a pinned start for the late-data tests: their data crosses
// midnight UTC, so the daily window is closed and checked whatever the
// time of day the tests run.
var lateBase = time.Date(2026, 11, 25, 22, 0, 0, 0, time.UTC)

// TestRecomputeReadsObjectsStartingBeforeTheRange: late objects that start
// in the middle of an hour make the aggregator recompute only the windows
// from there on. The on-time objects of that hour start before the
// recomputed range and must be read again, or the recomputed windows would
// hold only the late records. A late batch that crosses midnight also
// makes the two days' windows change. Every window size is checked against
// what was produced, not against a recomputation by the engine.
func TestRecomputeReadsObjectsStartingBeforeTheRange(t *testing.T) {
	tbl := sampleTable(t)
	if h := tbl.Rollup.LateHorizon; h < 90*time.Minute {
		t.Fatalf("the late batches below need a late horizon of 90m, the sample has %s", h)
	}
	raw, summaries := newLocal(t), newLocal(t)
	ctx := context.Background()
	f := newFeeder(t, raw, 3)
	// 22:00 to 01:00: hour objects, each starting near the top of its hour.
	for h := range 3 {
		f.add(3000, lateBase.Add(time.Duration(h)*time.Hour), lateBase.Add(time.Duration(h+1)*time.Hour))
		f.commit()
	}
	svc := newService(t, raw, summaries, "a", prometheus.NewRegistry())
	st, err := svc.RunOnce(ctx, tbl)
	if err != nil {
		t.Fatal(err)
	}
	if st.Computed == 0 || st.Recomputed != 0 {
		t.Fatalf("first run: %+v", st)
	}
	checkAgainstTruth(t, tbl, summaries, f.produced, st.Watermark)

	// Late, within the horizon: one batch starting at 23:40 (mid-hour), one
	// from 23:55 across midnight to 00:20.
	f.add(400, lateBase.Add(100*time.Minute), lateBase.Add(110*time.Minute))
	f.commit()
	f.add(400, lateBase.Add(115*time.Minute), lateBase.Add(140*time.Minute))
	f.commit()
	st, err = svc.RunOnce(ctx, tbl)
	if err != nil {
		t.Fatal(err)
	}
	if st.Recomputed == 0 || st.TooLate != 0 || st.Late != 0 {
		t.Fatalf("after late data within the horizon: %+v (want recomputed windows, none too late)", st)
	}
	// The on-time rows of the recomputed windows were read again, not only
	// the 800 late ones.
	if st.RowsRead <= 800 {
		t.Fatalf("recompute read %d rows: the on-time objects of the late windows were skipped", st.RowsRead)
	}
	checked := checkAgainstTruth(t, tbl, summaries, f.produced, st.Watermark)
	t.Logf("after late data: %+v; windows checked %v", st, checked)
}
