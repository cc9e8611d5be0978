package aggregate_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/aggregate"
	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/objstore/objstoretest"
	"github.com/sluicehq/sluice/schema"
)

// hookBucket is the real summary store with hooks around its writes of
// summary objects (leases and fences pass straight through).
type hookBucket struct {
	objstore.ConditionalBucket
	// before may block (a stalled process); it returns the context to write
	// with.
	before func(ctx context.Context, key string) context.Context
	after  func(key string, data []byte, err error)
}

func (h *hookBucket) write(ctx context.Context, key string, data []byte, fn func(ctx context.Context) error) error {
	if strings.HasPrefix(key, "_sluice/") {
		return fn(ctx)
	}
	if h.before != nil {
		ctx = h.before(ctx, key)
	}
	err := fn(ctx)
	if h.after != nil {
		h.after(key, data, err)
	}
	return err
}

func (h *hookBucket) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	return h.write(ctx, key, data, func(ctx context.Context) error {
		return h.ConditionalBucket.Put(ctx, key, bytes.NewReader(data), int64(len(data)))
	})
}

func (h *hookBucket) PutIfAbsent(ctx context.Context, key string, data []byte) error {
	return h.write(ctx, key, data, func(ctx context.Context) error { return h.ConditionalBucket.PutIfAbsent(ctx, key, data) })
}

func (h *hookBucket) PutIfMatch(ctx context.Context, key string, data []byte, version string) error {
	return h.write(ctx, key, data, func(ctx context.Context) error { return h.ConditionalBucket.PutIfMatch(ctx, key, data, version) })
}

// Fault 6 of the lake v2 issue: an aggregator stalls (GC pause, SIGSTOP)
// with a summary write in flight, after its last check of the lease. The
// lease ends, another aggregator takes the next one, sees newer data and
// writes a newer summary of the same object. When the stalled one wakes up
// its write reaches the store: it must fail, be counted, and the newer
// summary must stay.
func TestStaleLeaseHolderCannotOverwrite(t *testing.T) {
	t.Run("local", func(t *testing.T) { testStaleLeaseHolder(t, objstoretest.NewLocal(t)) })
	t.Run("s3", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		sm := objstore.NewMetrics(reg)
		b := objstoretest.NewS3(t, slog.New(slog.DiscardHandler))
		testStaleLeaseHolder(t, objstore.NewRetrying(objstore.NewInstrumented(b, sm, "summary"), objstore.DefaultRetryPolicy(), nil, sm))
	})
}

func testStaleLeaseHolder(t *testing.T, summaries objstore.ConditionalBucket) {
	tbl := testkit.SampleTable(t)
	raw := objstoretest.NewLocal(t)
	base := time.Now().UTC().Add(-3 * time.Hour).Truncate(time.Hour)
	f := newFeeder(t, raw, 2)
	f.add(4000, base, base.Add(90*time.Minute))
	f.Commit()
	cfg := aggregate.Config{Interval: 200 * time.Millisecond, Lease: 2 * time.Second, CompactEvery: -1}

	paused := make(chan string, 1)
	release := make(chan struct{})
	staleDone := make(chan error, 1)
	var once sync.Once
	stale := &hookBucket{ConditionalBucket: summaries,
		before: func(ctx context.Context, key string) context.Context {
			first := false
			once.Do(func() { first = true })
			if !first {
				return ctx
			}
			paused <- key
			<-release
			// The request was on its way: the lease's end does not stop it.
			return context.WithoutCancel(ctx)
		},
	}
	var staleKey string
	stale.after = func(key string, _ []byte, err error) {
		if key == staleKey {
			select {
			case staleDone <- err:
			default:
			}
		}
	}
	staleReg := prometheus.NewRegistry()
	svcStale, err := aggregate.NewService(cfg, raw, stale, []*schema.Table{tbl}, "stale", slog.New(slog.DiscardHandler), aggregate.NewMetrics(staleReg))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = svcStale.Run(ctx) }()
	select {
	case staleKey = <-paused:
	case <-time.After(30 * time.Second):
		t.Fatal("the first aggregator wrote no summary")
	}
	t.Logf("stale aggregator stalled writing %s", staleKey)

	// Newer data, then the next aggregator: it waits out the stalled lease
	// and rewrites the same object.
	f.add(2000, base, base.Add(90*time.Minute))
	f.Commit()
	var mu sync.Mutex
	var newer []byte
	freshWrote := make(chan struct{})
	fresh := &hookBucket{ConditionalBucket: summaries,
		after: func(key string, data []byte, err error) {
			if key != staleKey || err != nil {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if newer == nil {
				close(freshWrote)
			}
			newer = bytes.Clone(data)
		},
	}
	svcFresh, err := aggregate.NewService(cfg, raw, fresh, []*schema.Table{tbl}, "fresh", slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	wg.Add(1)
	go func() { defer wg.Done(); _ = svcFresh.Run(ctx) }()
	select {
	case <-freshWrote:
	case <-time.After(30 * time.Second):
		t.Fatal("the second aggregator did not write the stalled object")
	}

	// The stalled one wakes up.
	close(release)
	select {
	case err = <-staleDone:
	case <-time.After(30 * time.Second):
		t.Fatal("the stalled write did not return")
	}
	got := readAll(t, summaries, staleKey)
	mu.Lock()
	want := bytes.Clone(newer)
	mu.Unlock()
	cancel()
	wg.Wait()
	if err == nil {
		t.Errorf("the stalled aggregator's write of %s succeeded", staleKey)
	} else if !objstore.IsChanged(err) && !objstore.IsExists(err) {
		t.Errorf("the stalled write failed with %v, want a lost conditional write", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is not the newer summary (%d bytes) but %d other bytes: the stale write landed", staleKey, len(want), len(got))
	}
	if n := counterSum(t, staleReg, "sluice_aggregate_fenced_writes_total"); n < 1 {
		t.Errorf("sluice_aggregate_fenced_writes_total = %v, want at least 1", n)
	}
	if errors.Is(err, context.Canceled) {
		t.Errorf("the write was cancelled, not fenced: %v", err)
	}
}

// counterSum adds up every series of a counter family.
func counterSum(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// A compaction run under a lease that a newer holder has fenced uploads
// and commits nothing; the same run unfenced compacts.
func TestFencedCompactionWritesNothing(t *testing.T) {
	tbl := testkit.SampleTable(t)
	raw := objstoretest.NewLocal(t)
	hour := time.Now().UTC().Add(-3 * time.Hour).Truncate(time.Hour)
	f := newFeeder(t, raw, 2)
	for range 4 {
		f.add(500, hour, hour.Add(time.Hour))
		f.Commit()
	}
	f.add(200, hour.Add(90*time.Minute), hour.Add(2*time.Hour)) // the watermark passes the hour
	f.Commit()
	reg := prometheus.NewRegistry()
	c, err := aggregate.NewCompactor(aggregate.CompactorConfig{CloseDelay: time.Minute}, raw, lake.NewCommitLog(raw), slog.New(slog.DiscardHandler), aggregate.NewMetrics(reg))
	if err != nil {
		t.Fatal(err)
	}
	before := listObjects(t, raw, "")
	fenced := func(context.Context) error { return aggregate.ErrFenced }
	if _, err := aggregate.CompactTableFenced(c, context.Background(), tbl, time.Now(), fenced); !errors.Is(err, aggregate.ErrFenced) {
		t.Fatalf("fenced compaction: err = %v, want ErrFenced", err)
	}
	after := listObjects(t, raw, "")
	for k := range after {
		if _, ok := before[k]; !ok {
			t.Errorf("a fenced compaction wrote %s", k)
		}
	}
	res, err := c.CompactTable(context.Background(), tbl, time.Now())
	if err != nil || res.Committed == 0 {
		t.Fatalf("unfenced compaction: %+v, %v; want a committed group (else the fenced run proved nothing)", res, err)
	}
}

func TestConfigClockSkew(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cfg       aggregate.Config
		wantSkew  time.Duration
		wantError error
	}{
		{name: "default for the default lease", cfg: aggregate.Config{}, wantSkew: 5 * time.Second},
		{name: "default for a short lease", cfg: aggregate.Config{Interval: time.Second, Lease: 4 * time.Second}, wantSkew: time.Second},
		{name: "set", cfg: aggregate.Config{ClockSkew: 2 * time.Second}, wantSkew: 2 * time.Second},
		{name: "negative", cfg: aggregate.Config{ClockSkew: -time.Second}, wantError: aggregate.ErrBadSkew},
		{name: "half the lease", cfg: aggregate.Config{Interval: time.Second, Lease: 4 * time.Second, ClockSkew: 2 * time.Second}, wantError: aggregate.ErrBadSkew},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg.WithDefaults()
			err := cfg.Validate()
			if !errors.Is(err, tc.wantError) || (tc.wantError == nil) != (err == nil) {
				t.Fatalf("Validate() = %v, want %v", err, tc.wantError)
			}
			if tc.wantError == nil && cfg.ClockSkew != tc.wantSkew {
				t.Errorf("clock skew %s, want %s", cfg.ClockSkew, tc.wantSkew)
			}
		})
	}
}
