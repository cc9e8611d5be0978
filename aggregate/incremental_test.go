package aggregate_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/aggregate"
	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/lake/laketest"
	"github.com/sluicehq/sluice/objstore/objstoretest"
)

// A run after one changed hour costs the same whatever the length of the
// history before it, and far less than reading the whole table; the
// summaries stay exact throughout.
func TestRunCostFollowsChange(t *testing.T) {
	tbl := testkit.SampleTable(t)
	raw, summaries := laketest.NewCountingBucket(objstoretest.NewLocal(t)), laketest.NewCountingBucket(objstoretest.NewLocal(t))
	ctx := context.Background()
	base := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	f := newFeeder(t, raw, 2)
	hours := 0
	addHours := func(n int) {
		for range n {
			f.add(40, base.Add(time.Duration(hours)*time.Hour), base.Add(time.Duration(hours+1)*time.Hour))
			f.Commit()
			hours++
		}
	}
	svc := newService(t, raw, summaries, "a", prometheus.NewRegistry())
	var rc, sc map[string]int // the last run's calls, by kind
	run := func(svc *aggregate.Service, what string) (aggregate.RunStats, int) {
		t.Helper()
		raw.Counts()
		summaries.Counts()
		st, err := svc.RunOnce(ctx, tbl)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		rc, sc = raw.Counts(), summaries.Counts()
		calls := 0
		for _, c := range []map[string]int{rc, sc} {
			for _, n := range c {
				calls += n
			}
		}
		t.Logf("%s: %d calls (raw %v, summaries %v), %+v", what, calls, rc, sc, st)
		return st, calls
	}

	addHours(3)
	run(svc, "first run (whole table)")
	addHours(1)
	stShort, short := run(svc, "one new hour after 4 hours of history")
	if stShort.Computed == 0 {
		t.Fatalf("the new hour's windows were not computed: %+v", stShort)
	}
	addHours(22)
	run(svc, "catching up 22 hours")
	addHours(1)
	stLong, long := run(svc, "one new hour after 27 hours of history")
	if stLong.Computed == 0 {
		t.Fatalf("the new hour's windows were not computed: %+v", stLong)
	}
	// The cost of a change does not follow the history: the same change
	// after six times the history costs about the same. (Neither new hour
	// closes a day: a closing day window reads the day's 24 manifests.)
	if long > short+short/2 {
		t.Errorf("one changed hour cost %d calls after 4 hours of history but %d after 27", short, long)
	}
	_, idle := run(svc, "nothing changed")
	if idle > 5 || sc["put"] > 0 {
		t.Errorf("a run with nothing new made %d calls", idle)
	}
	checkAgainstRaw(t, tbl, raw, summaries, nil)

	// Late data into one old hour (beyond the late horizon: it is counted
	// as too late) touches that hour only.
	liveKeys := func() map[string]bool {
		live, err := lake.NewCommitLog(raw).LiveObjects(ctx, tbl.Name)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]bool{}
		for _, o := range live {
			out[o.Key] = true
		}
		return out
	}
	before := liveKeys()
	f.add(50, base.Add(10*time.Hour), base.Add(11*time.Hour))
	f.Commit()
	tooLate := map[string]bool{}
	for k := range liveKeys() {
		if !before[k] {
			tooLate[k] = true
		}
	}
	stLate, late := run(svc, "late data into one old hour")
	// It reads the late objects to count their rows per window (proportional
	// to the change), but lists and reads summaries as little as a new hour.
	if stLate.Late == 0 || rc["list"] > 5 || sc["get"] > 10 {
		t.Errorf("late data into one hour: %d calls (raw %v, summaries %v), %+v", late, rc, sc, stLate)
	}

	// Without the cursor a run reads the whole table, as every run did
	// before: the cost the cursor saves.
	if err := summaries.Delete(ctx, lake.RunCursorKey(tbl.Name)); err != nil {
		t.Fatal(err)
	}
	_, full := run(newService(t, raw, summaries, "b", prometheus.NewRegistry()), "whole table, no cursor (a new process)")
	if full < 3*long {
		t.Errorf("reading the whole table cost %d calls, one changed hour %d: the cursor saves little", full, long)
	}
	addHours(1)
	run(svc, "one new hour after the cursor was rebuilt")
	checkAgainstRaw(t, tbl, raw, summaries, tooLate)
}
