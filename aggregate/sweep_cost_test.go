package aggregate_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/lake/laketest"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/objstore/objstoretest"
)

// A sweep after one more hour of data costs the same whatever the length
// of the history before it, and far less than reading the whole table; it
// still deletes the orphan of a crashed flush in the changed hour at once,
// one in an hour nothing touches again within a full pass of the slow
// reconciliation, and nothing committed.
func TestSweepCostFollowsChange(t *testing.T) {
	const reconcileHours = 2
	tbl := testkit.SampleTable(t)
	raw := laketest.NewCountingBucket(objstoretest.NewLocal(t))
	ctx := context.Background()
	start := time.Now().UTC()
	base := start.Add(-400 * time.Hour).Truncate(time.Hour)
	f := newFeeder(t, raw, 2)
	hours := 0
	addHours := func(n int) {
		for range n {
			from := base.Add(time.Duration(hours) * time.Hour)
			f.add(40, from, from.Add(time.Hour))
			f.Commit()
			hours++
		}
	}
	// Each sweep runs two hours later than the one before (by its clock):
	// everything written before it is older than the grace.
	sweeps := 0
	clock := func() time.Time { return time.Now().Add(time.Duration(2*sweeps) * time.Hour) }
	newSweeper := func() *lake.Sweeper {
		s, err := lake.NewSweeper(lake.SweepConfig{Grace: time.Hour, ReconcileHours: reconcileHours}, raw, nil, "cost-test", slog.New(slog.DiscardHandler), nil)
		if err != nil {
			t.Fatal(err)
		}
		return s.WithClock(clock)
	}
	sw := newSweeper()
	sweep := func(sw *lake.Sweeper, what string) (lake.SweepReport, int) {
		t.Helper()
		sweeps++
		raw.Counts()
		rep, err := sw.Sweep(ctx, tbl.Name, lake.TableRetention{}, nil)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		counts := raw.Counts()
		calls := 0
		for _, n := range counts {
			calls += n
		}
		t.Logf("%s: %d calls %v, deleted %d", what, calls, counts, len(rep.Items))
		return rep, calls
	}
	exists := func(key string) bool {
		_, err := raw.Attributes(ctx, key)
		if err != nil && !objstore.IsNotExist(err) {
			t.Fatal(err)
		}
		return err == nil
	}
	// orphan leaves what a flush killed before its commit leaves in hour h.
	orphans := 0
	orphan := func(h int) string {
		orphans++
		k := lake.RawHourPrefix(tbl.Name, base.Add(time.Duration(h)*time.Hour)) + "killed-flush-" + string(rune('a'+orphans)) + ".parquet"
		objstoretest.Put(t, raw, k, []byte("left behind"))
		return k
	}
	// changedHour adds an hour whose flush crashed once, and sweeps.
	changedHour := func(what string) int {
		t.Helper()
		k := orphan(hours)
		addHours(1) // the retried flush commits into the same hour
		rep, calls := sweep(sw, what)
		if exists(k) {
			t.Errorf("%s: the orphan %s in the changed hour is still there (deleted %d)", what, k, len(rep.Items))
		}
		return calls
	}

	addHours(4)
	sweep(sw, "first sweep (the whole table)")
	short := changedHour("one changed hour after 4 hours of history")
	addHours(60)
	sweep(sw, "after 60 more hours")
	long := changedHour("one changed hour after 65 hours of history")
	// The slow pass's slice of the two sweeps differs by at most its hours.
	if long > short+2*reconcileHours {
		t.Errorf("one changed hour cost %d calls after 4 hours of history but %d after 65", short, long)
	}

	// An orphan in an hour nothing touches again goes within a full pass
	// of the slow reconciliation: one slice per sweep.
	old := orphan(10)
	passes := 0
	for exists(old) {
		if passes++; passes > hours/reconcileHours+4 {
			t.Fatalf("the orphan %s in an untouched hour is still there after %d sweeps", old, passes)
		}
		sweep(sw, "slow pass")
	}
	t.Logf("the untouched hour's orphan went after %d sweeps", passes)

	// Nothing committed was deleted, nothing uncommitted is left.
	live, err := lake.NewCommitLog(raw).LiveObjects(ctx, tbl.Name)
	if err != nil {
		t.Fatal(err)
	}
	dead, err := lake.NewCommitLog(raw).LiveDeadLetters(ctx, tbl.Name)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, o := range append(live, dead...) {
		want[o.Key] = true
	}
	for _, p := range []string{tbl.Name + "/", lake.DeadLetterRoot + tbl.Name + "/"} {
		if err := raw.Iter(ctx, p, func(a objstore.ObjectAttrs) error {
			if !want[a.Key] {
				t.Errorf("%s is in the store but not committed", a.Key)
			}
			delete(want, a.Key)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	for k := range want {
		t.Errorf("the committed %s was deleted", k)
	}

	// Without the cursor a sweep reads the whole table, as every sweep did
	// before: the cost the cursor saves.
	if err := raw.Delete(ctx, lake.SweepCursorKey(tbl.Name)); err != nil {
		t.Fatal(err)
	}
	addHours(1)
	_, full := sweep(newSweeper(), "one changed hour, no cursor (the whole table)")
	if full < 3*long {
		t.Errorf("sweeping the whole table cost %d calls, one changed hour %d: the cursor saves little", full, long)
	}
}
