package aggregate_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/aggregate"
	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/lake/laketest"
	"github.com/sluicehq/sluice/objstore/objstoretest"
)

// A compaction run after one more hour of data costs the same whatever the
// length of the history before it, and far less than reading the whole
// table; what it compacts is what the whole-table planner would.
func TestCompactionCostFollowsChange(t *testing.T) {
	tbl := testkit.SampleTable(t)
	raw := laketest.NewCountingBucket(objstoretest.NewLocal(t))
	ctx := context.Background()
	now := time.Now().UTC()
	base := now.Add(-200 * time.Hour).Truncate(time.Hour)
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
	newCompactor := func() *aggregate.Compactor {
		c, err := aggregate.NewCompactor(aggregate.CompactorConfig{CloseDelay: time.Minute},
			raw, lake.NewCommitLog(raw), slog.New(slog.DiscardHandler), aggregate.NewMetrics(prometheus.NewRegistry()))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := newCompactor()
	run := func(c *aggregate.Compactor, what string) (aggregate.CompactionResult, int) {
		t.Helper()
		raw.Counts()
		res, err := c.CompactTable(ctx, tbl, now)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		counts := raw.Counts()
		calls := 0
		for _, n := range counts {
			calls += n
		}
		t.Logf("%s: %d calls %v, %+v", what, calls, counts, res)
		return res, calls
	}
	// settle compacts until a run finds nothing more to do.
	settle := func(what string) {
		t.Helper()
		for range 100 {
			if res, _ := run(c, what); res.Groups == 0 {
				return
			}
		}
		t.Fatalf("%s: compaction never settled", what)
	}

	addHours(4)
	settle("first runs (whole table, then the cursor)")
	addHours(1) // closes the hour before it: its two objects are merged
	resShort, short := run(c, "one new hour after 4 hours of history")
	if resShort.Committed != 1 {
		t.Fatalf("the closed hour was not compacted: %+v", resShort)
	}
	settle("after 4 hours")
	addHours(60)
	settle("catching up 60 hours")
	addHours(1)
	resLong, long := run(c, "one new hour after 65 hours of history")
	if resLong.Committed != 1 {
		t.Fatalf("the closed hour was not compacted: %+v", resLong)
	}
	// The same change after sixteen times the history costs the same.
	if long > short+2 {
		t.Errorf("one changed hour cost %d calls after 4 hours of history but %d after 65", short, long)
	}
	settle("after 65 hours")
	if _, idle := run(c, "nothing changed"); idle > 6 {
		t.Errorf("a run with nothing new made %d calls", idle)
	}

	// Every closed hour is compacted, as the whole-table planner sees it:
	// nothing is left for it to do.
	live, err := lake.NewCommitLog(raw).LiveObjects(ctx, tbl.Name)
	if err != nil {
		t.Fatal(err)
	}
	closedBefore := base.Add(time.Duration(hours-1) * time.Hour)
	if left := aggregate.PlanCompaction(tbl.Name, live, closedBefore, c.Config()); len(left) != 0 {
		t.Errorf("the cursor left %d groups the whole-table planner finds, the first in hour %s", len(left), left[0].Hour)
	}
	var rows, committed int64
	for _, o := range live {
		rows += o.Rows
	}
	for p := range f.Partitions() {
		committed += f.Next(p)
	}
	if rows != committed {
		t.Errorf("the live objects hold %d rows, %d were committed", rows, committed)
	}

	// Without the cursor a run reads the whole table, as every run did
	// before: the cost the cursor saves.
	if err := raw.Delete(ctx, lake.CompactionCursorKey(tbl.Name)); err != nil {
		t.Fatal(err)
	}
	addHours(1)
	_, full := run(newCompactor(), "one new hour, no cursor (the whole table)")
	if full < 3*long {
		t.Errorf("reading the whole table cost %d calls, one changed hour %d: the cursor saves little", full, long)
	}
}

// An hour whose compaction records do not all apply on top of its
// manifest (here a garbage record) is planned from the whole table, and
// compacted all the same.
func TestCompactionPlansFromTheTableWhenAnHourIsUnclear(t *testing.T) {
	tbl := testkit.SampleTable(t)
	raw := objstoretest.NewLocal(t)
	ctx := context.Background()
	now := time.Now().UTC()
	base := now.Add(-10 * time.Hour).Truncate(time.Hour)
	f := newFeeder(t, raw, 2)
	c, err := aggregate.NewCompactor(aggregate.CompactorConfig{CloseDelay: time.Minute},
		raw, lake.NewCommitLog(raw), slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	f.add(40, base, base.Add(time.Hour))
	f.Commit()
	if _, err := c.CompactTable(ctx, tbl, now); err != nil { // no hour closed yet: the cursor
		t.Fatal(err)
	}
	objstoretest.Put(t, raw, lake.CompactionKey(tbl.Name, base, 7), []byte("not a record"))
	f.add(40, base.Add(time.Hour), base.Add(2*time.Hour)) // closes the first hour
	f.Commit()
	res, err := c.CompactTable(ctx, tbl, now)
	if err != nil || res.Committed != 1 {
		t.Fatalf("compaction of the hour with a garbage record: %+v, %v; want one group committed", res, err)
	}
	live, err := lake.NewCommitLog(raw).LiveObjects(ctx, tbl.Name)
	if err != nil {
		t.Fatal(err)
	}
	if left := aggregate.PlanCompaction(tbl.Name, live, base.Add(time.Hour), c.Config()); len(left) != 0 {
		t.Errorf("%d groups left in the first hour", len(left))
	}
}
