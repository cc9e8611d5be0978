package aggregate_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/aggregate"
	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/lake/laketest"
	"github.com/sluicehq/sluice/objstore"
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

// A first run over a table too long for its lease is cut short; it still
// leaves a cursor past every link it read, with every hour to look at
// again, so the next run goes on from the manifests instead of reading the
// whole table (and being cut short again); the summaries end exact.
func TestCutShortRunLeavesCursor(t *testing.T) {
	tbl := testkit.SampleTable(t)
	raw, store := objstoretest.NewLocal(t), objstoretest.NewLocal(t)
	summaries := &stallingSummaries{ConditionalBucket: store, cursorKey: lake.RunCursorKey(tbl.Name)}
	summaries.after.Store(2)
	ctx := context.Background()
	base := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	f := newFeeder(t, raw, 2)
	const hours = 6
	for h := range hours {
		f.add(40, base.Add(time.Duration(h)*time.Hour), base.Add(time.Duration(h+1)*time.Hour))
		f.Commit()
	}
	svc := newService(t, raw, summaries, "a", prometheus.NewRegistry())

	runCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
	_, err := svc.RunOnce(runCtx, tbl)
	cancel()
	if err == nil || summaries.stalled.Load() == 0 {
		t.Fatalf("the run with a stalled summary write ended with %v after %d stalls", err, summaries.stalled.Load())
	}
	cur := readRunCursor(t, store, tbl.Name)
	if len(cur.Chains) != 2 || len(cur.Retry) < hours || !cur.ClosedThrough.IsZero() {
		t.Fatalf("after the cut-short run the cursor is %+v: want both chains passed, the %d hours with data to retry and nothing closed", cur, hours)
	}

	// The next run is cut short as well, with a new hour of data: the
	// cursor passes the new links too and keeps every hour to retry.
	f.add(40, base.Add(hours*time.Hour), base.Add((hours+1)*time.Hour))
	f.Commit()
	summaries.after.Store(summaries.writes.Load() + 1)
	runCtx, cancel = context.WithTimeout(ctx, 2*time.Second)
	_, err = svc.RunOnce(runCtx, tbl)
	cancel()
	if err == nil {
		t.Fatal("the second run with a stalled summary write finished")
	}
	if again := readRunCursor(t, store, tbl.Name); len(again.Retry) < hours+1 || string(again.Chains[0]) == string(cur.Chains[0]) && string(again.Chains[1]) == string(cur.Chains[1]) {
		t.Fatalf("after the second cut-short run the cursor is %+v: want the new links passed and the %d hours with data to retry", again, hours+1)
	}

	summaries.after.Store(-1)
	st, err := svc.RunOnce(ctx, tbl)
	if err != nil {
		t.Fatal(err)
	}
	if st.Computed == 0 {
		t.Fatalf("the run after the cut-short one computed nothing: %+v", st)
	}
	cur = readRunCursor(t, store, tbl.Name)
	if len(cur.Retry) != 0 || cur.ClosedThrough.IsZero() {
		t.Fatalf("after the run that finished the cursor is %+v: want nothing to retry and a watermark closed through", cur)
	}
	checkAgainstRaw(t, tbl, raw, store, nil)
}

type runCursorView struct {
	Chains        []json.RawMessage `json:"chains"`
	ClosedThrough time.Time         `json:"closed_through"`
	Retry         []time.Time       `json:"retry"`
}

func readRunCursor(t *testing.T, b objstore.Bucket, table string) runCursorView {
	t.Helper()
	rc, err := b.Get(context.Background(), lake.RunCursorKey(table))
	if err != nil {
		t.Fatalf("run cursor: %v", err)
	}
	defer rc.Close()
	var c runCursorView
	if err := json.NewDecoder(rc).Decode(&c); err != nil {
		t.Fatal(err)
	}
	return c
}

// stallingSummaries lets the first `after` summary writes through, then
// stalls each until its caller gives up: a store that stops answering in
// the middle of a run. The run cursor is written as usual.
type stallingSummaries struct {
	objstore.ConditionalBucket
	cursorKey string
	after     atomic.Int64 // < 0: never stall
	writes    atomic.Int64
	stalled   atomic.Int64
}

func (s *stallingSummaries) stall(ctx context.Context, key string) error {
	if key == s.cursorKey {
		return nil
	}
	if n, after := s.writes.Add(1), s.after.Load(); after < 0 || n <= after {
		return nil
	}
	s.stalled.Add(1)
	<-ctx.Done()
	return ctx.Err()
}

func (s *stallingSummaries) PutIfAbsent(ctx context.Context, key string, data []byte) error {
	if err := s.stall(ctx, key); err != nil {
		return err
	}
	return s.ConditionalBucket.PutIfAbsent(ctx, key, data)
}

func (s *stallingSummaries) PutIfMatch(ctx context.Context, key string, data []byte, version string) error {
	if err := s.stall(ctx, key); err != nil {
		return err
	}
	return s.ConditionalBucket.PutIfMatch(ctx, key, data, version)
}

// A run that stalls just before it writes the run cursor (a paused
// process, a slow store) and wakes after another aggregator has run and
// moved the cursor on must not put its older cursor back: the next run
// would then read links twice at best, and at worst forget hours the
// newer run left to retry. Its write is conditional on the version it
// read, so it is refused as fenced, and the newer cursor stays.
func TestStaleCursorWriteIsRefused(t *testing.T) {
	tbl := testkit.SampleTable(t)
	raw, store := objstoretest.NewLocal(t), objstoretest.NewLocal(t)
	cursorKey := lake.RunCursorKey(tbl.Name)
	paused := &pausingCursor{ConditionalBucket: store, key: cursorKey, reached: make(chan struct{}), release: make(chan struct{})}
	ctx := context.Background()
	base := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	f := newFeeder(t, raw, 2)
	addHour := func(h int) {
		f.add(60, base.Add(time.Duration(h)*time.Hour), base.Add(time.Duration(h+1)*time.Hour))
		f.Commit()
	}
	for h := range 3 {
		addHour(h)
	}
	stale := newService(t, raw, paused, "stale", prometheus.NewRegistry())
	if _, err := stale.RunOnce(ctx, tbl); err != nil {
		t.Fatal(err)
	}

	addHour(3)
	paused.armed.Store(true)
	staleErr := make(chan error, 1)
	go func() {
		_, err := stale.RunOnce(ctx, tbl)
		staleErr <- err
	}()
	select {
	case <-paused.reached:
	case <-time.After(30 * time.Second):
		t.Fatal("the stale run never reached its cursor write")
	}

	// Meanwhile another aggregator runs over newer data and moves the cursor.
	addHour(4)
	fresh := newService(t, raw, store, "fresh", prometheus.NewRegistry())
	if _, err := fresh.RunOnce(ctx, tbl); err != nil {
		t.Fatal(err)
	}
	newer := readAll(t, store, cursorKey)

	close(paused.release)
	if err := <-staleErr; !errors.Is(err, aggregate.ErrFenced) {
		t.Fatalf("the stale run's cursor write ended with %v, want it fenced", err)
	}
	if got := readAll(t, store, cursorKey); !bytes.Equal(got, newer) {
		t.Fatalf("the stale run replaced the newer cursor:\n got %s\nwant %s", got, newer)
	}

	// And the cursor left in place carries on: the next run is exact.
	addHour(5)
	if _, err := fresh.RunOnce(ctx, tbl); err != nil {
		t.Fatal(err)
	}
	checkAgainstRaw(t, tbl, raw, store, nil)
}

// pausingCursor holds the first write of the run cursor once armed, until
// released: the store answers it only after the rest of the world moved on.
type pausingCursor struct {
	objstore.ConditionalBucket
	key      string
	armed    atomic.Bool
	reached  chan struct{}
	release  chan struct{}
	once     sync.Once
	didPause atomic.Bool
}

func (p *pausingCursor) pause(key string) {
	if key != p.key || !p.armed.Load() || p.didPause.Swap(true) {
		return
	}
	p.once.Do(func() { close(p.reached) })
	<-p.release
}

func (p *pausingCursor) PutIfAbsent(ctx context.Context, key string, data []byte) error {
	p.pause(key)
	return p.ConditionalBucket.PutIfAbsent(ctx, key, data)
}

func (p *pausingCursor) PutIfMatch(ctx context.Context, key string, data []byte, version string) error {
	p.pause(key)
	return p.ConditionalBucket.PutIfMatch(ctx, key, data, version)
}

func (p *pausingCursor) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	p.pause(key)
	return p.ConditionalBucket.Put(ctx, key, r, size)
}
