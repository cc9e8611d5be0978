package aggregate_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/sluicehq/sluice/aggregate"
	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/lake/laketest"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/objstore/objstoretest"
	"github.com/sluicehq/sluice/schema"
)

// TestLongHistory builds a lake of many commit links (two a minute per
// partition, each naming a one-row raw object, as a table flushing twice a
// minute has) and measures what the things that must not follow history
// cost on it: resuming a partition, and an aggregator run after one more
// flush of every partition (one changed hour). In CI it runs small and
// checks the aims; the figures in BENCHMARKS.md come from larger lakes:
//
//	SLUICE_LONG_HISTORY=<partitions>:<links per partition>  size (default 4:120)
//	SLUICE_LONG_HISTORY_DIR=<dir>     keep the lake (local store) in dir: the
//	                                  first run builds it, later runs only measure
//	SLUICE_LONG_HISTORY_S3=1          on the S3 server of the test environment
//	SLUICE_LONG_HISTORY_REPORT=1      report only, check no aims (for older code)
func TestLongHistory(t *testing.T) {
	parts, links := 4, 120
	if v := os.Getenv("SLUICE_LONG_HISTORY"); v != "" {
		p, l, ok := strings.Cut(v, ":")
		var err1, err2 error
		parts, err1 = strconv.Atoi(p)
		links, err2 = strconv.Atoi(l)
		if !ok || err1 != nil || err2 != nil || parts < 1 || links < 2 {
			t.Fatalf("SLUICE_LONG_HISTORY=%q: want <partitions>:<links per partition>", v)
		}
	}
	check := os.Getenv("SLUICE_LONG_HISTORY_REPORT") == ""
	ctx := context.Background()
	tbl := testkit.SampleTable(t)

	var rawB, sumB objstore.ConditionalBucket
	dir := os.Getenv("SLUICE_LONG_HISTORY_DIR")
	switch {
	case os.Getenv("SLUICE_LONG_HISTORY_S3") != "":
		rawB, sumB = objstoretest.NewS3(t, slog.New(slog.DiscardHandler)), objstoretest.NewS3(t, slog.New(slog.DiscardHandler))
	case dir != "":
		for _, sub := range []string{"raw", "summaries"} {
			if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		var err1, err2 error
		rawB, err1 = objstore.NewLocal(filepath.Join(dir, "raw"))
		sumB, err2 = objstore.NewLocal(filepath.Join(dir, "summaries"))
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
	default:
		rawB, sumB = objstoretest.NewLocal(t), objstoretest.NewLocal(t)
	}
	raw, summaries := laketest.NewCountingBucket(rawB), laketest.NewCountingBucket(sumB)

	// The history ends in the current hour, two links a minute.
	const every = 30 * time.Second
	built := filepath.Join(dir, "built")
	var base time.Time
	if data, err := os.ReadFile(built); dir != "" && err == nil {
		if base, err = time.Parse(time.RFC3339Nano, strings.TrimSpace(string(data))); err != nil {
			t.Fatal(err)
		}
		t.Logf("measuring the lake in %s (built from %s)", dir, base)
	} else {
		base = time.Now().UTC().Add(-time.Duration(links) * every).Truncate(time.Hour)
		start := time.Now()
		buildHistory(t, tbl, raw, parts, links, base, every)
		t.Logf("built %d partitions x %d links (%s of history) in %s", parts, links, time.Duration(links)*every, time.Since(start).Round(time.Millisecond))
		start = time.Now()
		if _, err := newService(t, raw, summaries, "build", prometheus.NewRegistry()).RunOnce(ctx, tbl); err != nil {
			t.Fatal(err)
		}
		t.Logf("first aggregator run (every window) in %s", time.Since(start).Round(time.Millisecond))
		// The first sweep and compaction run read the whole table (and
		// leave their cursors).
		start = time.Now()
		if _, err := newLongHistorySweeper(t, raw).Sweep(ctx, tbl.Name, lake.TableRetention{}, nil); err != nil {
			t.Fatal(err)
		}
		t.Logf("first sweep in %s", time.Since(start).Round(time.Millisecond))
		start = time.Now()
		if _, err := newLongHistoryCompactor(t, raw).CompactTable(ctx, tbl, time.Now()); err != nil {
			t.Fatal(err)
		}
		t.Logf("first compaction run in %s", time.Since(start).Round(time.Millisecond))
		if dir != "" {
			if err := os.WriteFile(built, []byte(base.Format(time.RFC3339Nano)), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}

	// Resume, as a new process does on assignment: nothing cached.
	raw.Counts()
	start := time.Now()
	end, found, err := lake.NewCommitLog(raw).Resume(ctx, tbl.Name, "kafka:events", "0")
	took := time.Since(start)
	calls := raw.Counts()
	if err != nil || !found {
		t.Fatalf("resume: %+v %t %v", end, found, err)
	}
	t.Logf("RESULT resume: %d calls (%v) in %s, chain end link %d", calls["list"]+calls["get"], calls, took.Round(time.Microsecond), end.Seq)
	if check && (calls["list"]+calls["get"] >= 10 || took >= time.Second) {
		t.Errorf("resume: %d calls in %s, aim < 10 calls and < 1 s", calls["list"]+calls["get"], took)
	}

	// One more flush of every partition: the newest hour changes.
	nextSeq := make([]int64, parts)
	for p := range parts {
		e, _, err := lake.NewCommitLog(raw).Resume(ctx, tbl.Name, "kafka:events", strconv.Itoa(p))
		if err != nil {
			t.Fatal(err)
		}
		nextSeq[p] = e.Seq
	}
	// Two flushes each (a minute of data: a minute window closes), the
	// second of partition 0 holding a record three minutes late (its closed
	// window is recomputed).
	w := lake.NewCommitLog(raw)
	for p := range parts {
		for i := nextSeq[p]; i < nextSeq[p]+2; i++ { // link i holds the row at base + (i-1)*every
			ts := base.Add(time.Duration(i-1)*every + time.Duration(p)*time.Millisecond)
			if p == 0 && i > nextSeq[p] {
				ts = ts.Add(-3 * time.Minute)
			}
			commitLink(t, tbl, raw, w, p, i, ts)
		}
	}

	// The run, by a new process (the service of a restarted pod, or a run
	// cut short by its lease): nothing cached.
	svc := newService(t, raw, summaries, "measure", prometheus.NewRegistry())
	raw.Counts()
	summaries.Counts()
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	var st aggregate.RunStats
	start = time.Now()
	heapPeak := testkit.PeakHeap(func() {
		st, err = svc.RunOnce(ctx, tbl)
		took = time.Since(start)
	})
	runtime.ReadMemStats(&m1)
	if err != nil {
		t.Fatal(err)
	}
	rc, sc := raw.Counts(), summaries.Counts()
	total := 0
	for _, c := range []map[string]int{rc, sc} {
		for _, n := range c {
			total += n
		}
	}
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	t.Logf("RESULT run after one changed hour: %d calls (raw %v, summaries %v) in %s; allocated %d MiB, heap peak %d MiB, process max RSS %d MiB; %+v",
		total, rc, sc, took.Round(time.Millisecond), (m1.TotalAlloc-m0.TotalAlloc)>>20, heapPeak>>20, ru.Maxrss>>10, st)
	if st.Computed+st.Recomputed == 0 {
		t.Errorf("the changed hour's windows were not brought up to date: %+v", st)
	}
	// What the run may cost: per partition a listing, reads of its two new
	// links and of the raw objects of the windows they change (two a
	// minute), and a bounded number of manifests and summaries; nothing
	// that grows with the links before.
	if limit := 8*parts + 60; check && total > limit {
		t.Errorf("run after one changed hour: %d calls, aim at most %d (8 per partition + 60)", total, limit)
	}

	// A sweep and a compaction run after the same change, each as a new
	// process would make it.
	sweepCalls, tookSweep := countCalls(raw, func() error {
		_, err := newLongHistorySweeper(t, raw).Sweep(ctx, tbl.Name, lake.TableRetention{}, nil)
		return err
	})
	t.Logf("RESULT sweep after one changed hour: %d calls %v in %s", sum(sweepCalls), sweepCalls, tookSweep.Round(time.Millisecond))
	compactCalls, tookCompact := countCalls(raw, func() error {
		_, err := newLongHistoryCompactor(t, raw).CompactTable(ctx, tbl, time.Now())
		return err
	})
	t.Logf("RESULT compaction run after one changed hour: %d calls %v in %s", sum(compactCalls), compactCalls, tookCompact.Round(time.Millisecond))
	// Per partition a listing and reads of its two new links; a bounded
	// number of hours listed and indexes read (the slice of the slow pass:
	// at most 1,000 keys of 24 hours); nothing that grows with the links
	// before.
	if limit := 4*parts + 80; check && (sum(sweepCalls) > limit || sum(compactCalls) > limit) {
		t.Errorf("after one changed hour: a sweep made %d calls, a compaction run %d; aim at most %d each (4 per partition + 80)",
			sum(sweepCalls), sum(compactCalls), limit)
	}
}

// newLongHistorySweeper is a sweeper as `sluice sweep` makes one: a new
// process, nothing cached. The lake is written in minutes, not over the
// months it stands for: the sweeper's clock runs two hours ahead (past its
// grace), so the history is as old as it would be, not all of it inside
// the grace and watched.
func newLongHistorySweeper(t *testing.T, raw objstore.Bucket) *lake.Sweeper {
	t.Helper()
	sw, err := lake.NewSweeper(lake.SweepConfig{}, raw, nil, "long-history", slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	return sw.WithClock(func() time.Time { return time.Now().Add(2 * time.Hour) })
}

// newLongHistoryCompactor is a compactor of a new process. Its target
// makes no one-row object small: the run measures what finding the work
// costs (reading links and planning), not merging, which follows the data
// merged.
func newLongHistoryCompactor(t *testing.T, raw objstore.Bucket) *aggregate.Compactor {
	t.Helper()
	c, err := aggregate.NewCompactor(aggregate.CompactorConfig{TargetBytes: 1 << 10, SmallFraction: 0.01},
		raw, lake.NewCommitLog(raw), slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// countCalls runs f and returns the calls it made to b and its time.
func countCalls(b *laketest.CountingBucket, f func() error) (map[string]int, time.Duration) {
	b.Counts()
	start := time.Now()
	if err := f(); err != nil {
		panic(err)
	}
	return b.Counts(), time.Since(start)
}

func sum(counts map[string]int) int {
	n := 0
	for _, c := range counts {
		n += c
	}
	return n
}

// buildHistory writes links links per partition (after each genesis), each
// naming one one-row raw object, 8 partitions at a time.
func buildHistory(t *testing.T, tbl *schema.Table, b objstore.Bucket, parts, links int, base time.Time, every time.Duration) {
	t.Helper()
	ctx := context.Background()
	l := lake.NewCommitLog(b)
	var g errgroup.Group
	g.SetLimit(8)
	for p := range parts {
		g.Go(func() error {
			if _, err := l.Open(ctx, tbl.Name, "kafka:events", strconv.Itoa(p), "build", func(context.Context) (lake.Genesis, error) {
				return lake.Genesis{SourceID: "topic"}, nil
			}); err != nil {
				return err
			}
			for i := 1; i < links; i++ {
				if err := writeLink(tbl, b, l, p, int64(i), base.Add(time.Duration(i-1)*every+time.Duration(p)*time.Millisecond)); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
}

func commitLink(t *testing.T, tbl *schema.Table, b objstore.Bucket, l *lake.CommitLog, p int, seq int64, ts time.Time) {
	t.Helper()
	if err := writeLink(tbl, b, l, p, seq, ts); err != nil {
		t.Fatal(err)
	}
}

// writeLink writes link seq of partition p: one raw object holding one
// event at ts, then the link naming it.
func writeLink(tbl *schema.Table, b objstore.Bucket, l *lake.CommitLog, p int, seq int64, ts time.Time) error {
	ctx := context.Background()
	data, err := oneRowParquet(tbl, ts, p, seq)
	if err != nil {
		return err
	}
	key := fmt.Sprintf("%s/dt=%s/hour=%02d/p%d-%d.parquet", tbl.Name, ts.UTC().Format(time.DateOnly), ts.UTC().Hour(), p, seq)
	if err := b.Put(ctx, key, bytes.NewReader(data), int64(len(data))); err != nil {
		return err
	}
	us := ts.UnixMicro()
	return l.Commit(ctx, lake.CommitRecord{Table: tbl.Name, Source: "kafka:events", Partition: strconv.Itoa(p), Seq: seq, Kind: lake.LinkData,
		First: lake.PositionOf(seq - 1), Next: lake.PositionOf(seq), SourceID: "topic", Records: 1, Writer: "build",
		Objects: []lake.CommittedObject{{Key: key, Kind: lake.KindRaw, Rows: 1, Size: int64(len(data)), Checksum: lake.Checksum(data),
			MinEventTimeMicros: us, MaxEventTimeMicros: us}}})
}

func oneRowParquet(tbl *schema.Table, ts time.Time, p int, seq int64) ([]byte, error) {
	dec := schema.NewDecoder(tbl, schema.WithNow(func() time.Time { return ts.Add(time.Hour) }))
	batch := schema.NewBatch(tbl, nil)
	rec := fmt.Appendf(nil, `{"ts":%q,"event_id":"e%d-%d","user_id":"u%d","event_type":%q,"country":%q,"device":"mobile","amount":%d.5,"latency_ms":%d,"ok":true}`,
		ts.UTC().Format(time.RFC3339Nano), p, seq, seq%97, eventTypes[int(seq)%len(eventTypes)], countries[p%len(countries)], seq%100, seq%1000)
	if _, err := dec.Decode(batch, rec, schema.Meta{Source: "kafka:events", Partition: strconv.Itoa(p), Offset: seq}); err != nil {
		return nil, fmt.Errorf("decode %s: %w", rec, err)
	}
	ar := batch.NewRecord()
	defer ar.Release()
	var buf bytes.Buffer
	if _, err := schema.WriteParquet(&buf, tbl, ar, nil, schema.WriterOptions{}); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
