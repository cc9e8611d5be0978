package aggregate_test

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/aggregate"
	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/lake/laketest"
	"github.com/sluicehq/sluice/loadtest/verify"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/objstore/objstoretest"
)

// The cleanup half of done-when 2 of the long-running-lake issue: after
// crashed flushes (objects with no record, an abandoned upload) and a
// sweep, the store holds no uncommitted object older than the grace, every
// committed row is intact and the verifier counts each once; the same with
// compaction running while the sweeper deletes.
func TestSweepAfterCrashesLocal(t *testing.T) {
	for _, compact := range []bool{false, true} {
		t.Run(fmt.Sprintf("compaction=%v", compact), func(t *testing.T) {
			runSweepAfterCrashes(t, objstoretest.NewLocal(t), compact)
		})
	}
}

func TestSweepAfterCrashesS3(t *testing.T) {
	for _, compact := range []bool{false, true} {
		t.Run(fmt.Sprintf("compaction=%v", compact), func(t *testing.T) {
			runSweepAfterCrashes(t, objstoretest.NewS3(t, slog.New(slog.DiscardHandler)), compact)
		})
	}
}

// sweepGrace is short so the test need not wait long; the compactor must
// commit within less (commit_within), as in production.
const (
	sweepGrace   = 3 * time.Second
	commitWithin = time.Second
)

func runSweepAfterCrashes(t *testing.T, raw objstore.Bucket, compact bool) {
	ctx := t.Context()
	tbl := testkit.SampleTable(t)
	base := time.Now().UTC().Add(-6 * time.Hour).Truncate(time.Hour)
	f := newFeeder(t, raw, 4)
	for range 6 {
		f.add(1500, base, base.Add(4*time.Hour))
		f.Commit()
	}
	exp := verify.NewExpected()
	var total int64
	for p := range f.Partitions() {
		n := f.Next(p)
		for off := range n {
			exp.AddGood(fmt.Sprint(p), off)
		}
		total += n
	}

	// What killed writers leave: a copy of a committed object under the
	// name a retried flush would have used (same rows: a reader of every
	// file counts them twice), a dead-letter file, a compaction output
	// never committed, and a multipart upload never completed.
	log := lake.NewCommitLog(raw)
	live, err := log.LiveObjects(ctx, tbl.Name)
	if err != nil {
		t.Fatal(err)
	}
	var leftovers []string
	for i, o := range live[:4] {
		data := readAll(t, raw, o.Key)
		k := strings.TrimSuffix(o.Key, ".parquet") + fmt.Sprintf("-killed%d.parquet", i)
		objstoretest.Put(t, raw, k, data)
		leftovers = append(leftovers, k)
	}
	hour := lake.RawHourPrefix(tbl.Name, base)
	dl := lake.DeadLetterRoot + tbl.Name + "/" + strings.TrimPrefix(hour, tbl.Name+"/") + "kafka-events-0-killed.jsonl"
	objstoretest.Put(t, raw, dl, []byte(`{"partition":"0","offset":1,"reason":"x"}`+"\n"))
	comp := hour + "compacted-0123456789abcdef01234567-dead-0.parquet"
	objstoretest.Put(t, raw, comp, readAll(t, raw, live[0].Key))
	leftovers = append(leftovers, dl, comp)
	uploadThere := laketest.PlantUpload(t, raw, hour+"killed-mid-upload.parquet")
	time.Sleep(sweepGrace + 1100*time.Millisecond) // older than the grace (S3 times are whole seconds)

	reg := prometheus.NewRegistry()
	am := aggregate.NewMetrics(reg)
	sw, err := lake.NewSweeper(lake.SweepConfig{Grace: sweepGrace}, raw, nil, "test-sweeper", slog.New(slog.DiscardHandler), am.Sweep())
	if err != nil {
		t.Fatal(err)
	}
	var compactions int
	if compact {
		// Compaction and sweeps run at once; each compaction commits within
		// commitWithin of its first upload, well inside the grace, but
		// slowly enough that sweeps run while its new objects have no
		// record yet.
		slow := objstoretest.NewHookBucket(raw)
		slow.Before = func(op, key string) error {
			if op == "put_if_absent" && strings.HasPrefix(key, lake.CompactionsRoot) {
				time.Sleep(commitWithin / 2)
			}
			return nil
		}
		comp, err := aggregate.NewCompactor(aggregate.CompactorConfig{TargetBytes: 64 << 10, CloseDelay: time.Minute, MaxGroupsPerRun: 2, CommitWithin: commitWithin},
			slow, lake.NewCommitLog(slow), slog.New(slog.DiscardHandler), am)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		stop := make(chan struct{})
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				res, err := comp.CompactTable(ctx, tbl, time.Now())
				if err != nil {
					t.Errorf("compaction: %v", err)
					return
				}
				compactions += res.Committed
				time.Sleep(50 * time.Millisecond)
			}
		})
		for range 20 {
			if _, err := sw.Sweep(ctx, tbl.Name, lake.TableRetention{}, nil); err != nil {
				t.Errorf("sweep during compaction: %v", err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		close(stop)
		wg.Wait()
		if compactions == 0 {
			t.Fatal("no compaction committed while sweeping")
		}
		// Past the grace of the last compaction record, the objects it
		// replaced may go too.
		time.Sleep(sweepGrace + 1100*time.Millisecond)
	}
	rep, err := sw.Sweep(ctx, tbl.Name, lake.TableRetention{}, nil)
	if err != nil {
		t.Fatal(err)
	}

	// The store holds exactly the live objects: nothing uncommitted, nothing
	// replaced, so a reader of every file under the table sees each row once.
	live, err = log.LiveObjects(ctx, tbl.Name)
	if err != nil {
		t.Fatal(err)
	}
	dead, err := log.LiveDeadLetters(ctx, tbl.Name)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]lake.CommittedObject{}
	for _, o := range append(live, dead...) {
		want[o.Key] = o.CommittedObject
	}
	var rowsInStore int64
	for _, prefix := range []string{tbl.Name + "/", lake.DeadLetterRoot + tbl.Name + "/"} {
		err := raw.Iter(ctx, prefix, func(a objstore.ObjectAttrs) error {
			o, ok := want[a.Key]
			if !ok {
				t.Errorf("%s is in the store but no reader sees it (%s old)", a.Key, time.Since(a.LastModified).Round(time.Second))
				return nil
			}
			if err := lake.CheckObject(o, readAll(t, raw, a.Key)); err != nil {
				t.Errorf("committed object damaged: %v", err)
			}
			if o.Kind == lake.KindRaw {
				rowsInStore += o.Rows
			}
			delete(want, a.Key)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for k := range want {
		t.Errorf("live object %s is gone", k)
	}
	if rowsInStore != total {
		t.Errorf("the raw objects in the store hold %d rows, %d were committed", rowsInStore, total)
	}
	if uploadThere() {
		t.Error("the abandoned upload is still there")
	}

	got, err := verify.ReadCommitted(ctx, raw, tbl.Name, verify.Options{Source: "kafka:events", EventIDColumn: "event_id"})
	if err != nil {
		t.Fatal(err)
	}
	if r := verify.Compare(exp, got); !r.OK() {
		t.Fatalf("verifier: %s", r)
	}
	if got.Rows != total || got.DuplicateEventIDs != 0 {
		t.Fatalf("verifier read %d rows (%d duplicate ids), %d were committed", got.Rows, got.DuplicateEventIDs, total)
	}
	if compact && (got.CompactedObjects == 0 || got.ReplacedObjects == 0) {
		t.Fatalf("verifier read %d compacted objects in place of %d replaced ones; want some", got.CompactedObjects, got.ReplacedObjects)
	}
	t.Logf("%d rows committed; %d leftovers planted; last sweep deleted %d objects (%d kept by the re-check); %d compactions; verifier read %d objects (%d compacted, %d replaced ones skipped)",
		total, len(leftovers)+1, len(rep.Items), rep.Kept, compactions, got.RawObjects, got.CompactedObjects, got.ReplacedObjects)
}
