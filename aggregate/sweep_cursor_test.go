package aggregate_test

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/objstore/objstoretest"
)

// A sweeper that stalls just before it writes its cursor and wakes after
// another sweeper has run and moved the cursor on must not put its older
// cursor back (the hours the newer one watches would be forgotten): its
// write is conditional on the version it read, so it loses quietly, the
// newer cursor stays, the orphans go and every committed object stays.
func TestStaleSweepCursorWriteLoses(t *testing.T) {
	tbl := testkit.SampleTable(t)
	raw := objstoretest.NewLocal(t)
	ctx := context.Background()
	base := time.Now().UTC().Add(-48 * time.Hour).Truncate(time.Hour)
	f := newFeeder(t, raw, 2)
	hours := 0
	addHour := func() time.Time {
		from := base.Add(time.Duration(hours) * time.Hour)
		f.add(40, from, from.Add(time.Hour))
		f.Commit()
		hours++
		return from
	}
	orphan := func(hour time.Time, name string) string {
		k := lake.RawHourPrefix(tbl.Name, hour) + name + ".parquet"
		objstoretest.Put(t, raw, k, []byte("left behind by a killed flush"))
		return k
	}
	cursorKey := lake.SweepCursorKey(tbl.Name)
	paused := &pausingCursor{ConditionalBucket: raw, key: cursorKey, reached: make(chan struct{}), release: make(chan struct{})}
	// Both sweepers' clocks run three hours ahead: everything is older
	// than the grace.
	clock := func() time.Time { return time.Now().Add(3 * time.Hour) }
	newSweeper := func(b objstore.Bucket, name string) *lake.Sweeper {
		s, err := lake.NewSweeper(lake.SweepConfig{Grace: time.Hour}, b, nil, name, slog.New(slog.DiscardHandler), nil)
		if err != nil {
			t.Fatal(err)
		}
		return s.WithClock(clock)
	}
	sweep := func(s *lake.Sweeper) {
		t.Helper()
		if _, err := s.Sweep(ctx, tbl.Name, lake.TableRetention{}, nil); err != nil {
			t.Fatal(err)
		}
	}
	stale, fresh := newSweeper(paused, "stale"), newSweeper(raw, "fresh")
	for range 3 {
		addHour()
	}
	sweep(stale) // the first sweep: the whole table, then the cursor

	first := orphan(addHour(), "killed-a")
	paused.armed.Store(true)
	staleErr := make(chan error, 1)
	go func() {
		_, err := stale.Sweep(ctx, tbl.Name, lake.TableRetention{}, nil)
		staleErr <- err
	}()
	select {
	case <-paused.reached:
	case <-time.After(30 * time.Second):
		t.Fatal("the stale sweep never reached its cursor write")
	}

	second := orphan(addHour(), "killed-b")
	sweep(fresh)
	newer := readAll(t, raw, cursorKey)

	close(paused.release)
	if err := <-staleErr; err != nil {
		t.Fatalf("the stale sweep: %v (losing the cursor is not an error)", err)
	}
	if got := readAll(t, raw, cursorKey); !bytes.Equal(got, newer) {
		t.Fatalf("the stale sweep replaced the newer sweep cursor:\n got %s\nwant %s", got, newer)
	}

	addHour()
	sweep(fresh)
	for _, k := range []string{first, second} {
		if _, err := raw.Attributes(ctx, k); !objstore.IsNotExist(err) {
			t.Errorf("orphan %s still there (%v)", k, err)
		}
	}
	live, err := lake.NewCommitLog(raw).LiveObjects(ctx, tbl.Name)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range live {
		if _, err := raw.Attributes(ctx, o.Key); err != nil {
			t.Errorf("committed object %s: %v", o.Key, err)
		}
	}
	if len(live) == 0 {
		t.Fatal("no committed objects")
	}
}
