package aggregate_test

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/aggregate"
	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/objstore/objstoretest"
)

// A compactor that stalls just before it writes its cursor and wakes after
// another compactor has run and moved the cursor on must not put its older
// cursor back (the hours the newer run left pending would be forgotten):
// its write is conditional on the version it read, so it loses quietly,
// the newer cursor stays, and every committed row stays live exactly once.
func TestStaleCompactionCursorWriteLoses(t *testing.T) {
	tbl := testkit.SampleTable(t)
	raw := objstoretest.NewLocal(t)
	ctx := context.Background()
	now := time.Now().UTC()
	base := now.Add(-48 * time.Hour).Truncate(time.Hour)
	f := newFeeder(t, raw, 2)
	hours, rows := 0, int64(0)
	addHour := func() {
		from := base.Add(time.Duration(hours) * time.Hour)
		f.add(40, from, from.Add(time.Hour))
		f.Commit()
		hours++
		rows += 40
	}
	cursorKey := lake.CompactionCursorKey(tbl.Name)
	paused := &pausingCursor{ConditionalBucket: raw, key: cursorKey, reached: make(chan struct{}), release: make(chan struct{})}
	newCompactor := func(b objstore.ConditionalBucket) *aggregate.Compactor {
		c, err := aggregate.NewCompactor(aggregate.CompactorConfig{CloseDelay: time.Minute},
			b, lake.NewCommitLog(b), slog.New(slog.DiscardHandler), aggregate.NewMetrics(prometheus.NewRegistry()))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	settle := func(c *aggregate.Compactor) {
		t.Helper()
		for range 100 {
			res, err := c.CompactTable(ctx, tbl, now)
			if err != nil {
				t.Fatal(err)
			}
			if res.Groups == 0 {
				return
			}
		}
		t.Fatal("compaction never settled")
	}
	stale, fresh := newCompactor(paused), newCompactor(raw)
	for range 4 {
		addHour()
	}
	settle(stale) // the first runs: the whole table, then the cursor

	addHour()
	paused.armed.Store(true)
	staleErr := make(chan error, 1)
	go func() {
		_, err := stale.CompactTable(ctx, tbl, now)
		staleErr <- err
	}()
	select {
	case <-paused.reached:
	case <-time.After(30 * time.Second):
		t.Fatal("the stale compaction run never reached its cursor write")
	}

	addHour()
	settle(fresh)
	newer := readAll(t, raw, cursorKey)

	close(paused.release)
	if err := <-staleErr; err != nil {
		t.Fatalf("the stale compaction run: %v (losing the cursor is not an error)", err)
	}
	if got := readAll(t, raw, cursorKey); !bytes.Equal(got, newer) {
		t.Fatalf("the stale run replaced the newer compaction cursor:\n got %s\nwant %s", got, newer)
	}

	addHour()
	settle(fresh)
	live, err := lake.NewCommitLog(raw).LiveObjects(ctx, tbl.Name)
	if err != nil {
		t.Fatal(err)
	}
	var liveRows int64
	compacted := 0
	for _, o := range live {
		if o.Kind == lake.KindRaw {
			liveRows += o.Rows
		}
		if o.Compaction != "" {
			compacted++
		}
	}
	if liveRows != rows || compacted == 0 {
		t.Fatalf("live raw rows %d in %d objects (%d compacted), committed %d", liveRows, len(live), compacted, rows)
	}
}
