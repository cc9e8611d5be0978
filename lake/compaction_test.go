package lake_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/objstore/objstoretest"
)

var compHour = time.Date(2024, 5, 1, 13, 0, 0, 0, time.UTC)

// compFixture commits, for each partition, n links of 10 rows each, one raw
// object per link in compHour, and returns the committed raw objects by key.
func compFixture(t *testing.T, b objstore.Bucket, l *lake.CommitLog, parts []string, n int) map[string]lake.CommittedObject {
	t.Helper()
	objs := map[string]lake.CommittedObject{}
	for _, p := range parts {
		if _, err := l.Open(t.Context(), "t", "kafka:e", p, "w1", func(context.Context) (lake.Genesis, error) { return lake.Genesis{}, nil }); err != nil {
			t.Fatal(err)
		}
		for i := range n {
			first := int64(i * 10)
			key := fmt.Sprintf("%skafka-e-%s-%020d-w1.parquet", lake.RawHourPrefix("t", compHour), p, first)
			put(t, b, key, []byte("raw"))
			o := lake.CommittedObject{Key: key, Kind: lake.KindRaw, Rows: 10, Size: 3, Checksum: lake.Checksum([]byte("raw")),
				MinEventTimeMicros: compHour.Add(time.Minute).UnixMicro(), MaxEventTimeMicros: compHour.Add(2 * time.Minute).UnixMicro()}
			rec := lake.CommitRecord{Table: "t", Source: "kafka:e", Partition: p, Seq: int64(i + 1), Kind: lake.LinkData,
				First: lake.PositionOf(first), Next: lake.PositionOf(first + 10),
				Records: 10, Writer: "w1", Objects: []lake.CommittedObject{o}}
			if i == 0 { // a dead letter too: compaction must not touch it
				dl := fmt.Sprintf("%st/dt=2024-05-01/hour=13/%s.jsonl", lake.DeadLetterRoot, p)
				put(t, b, dl, []byte("{}\n"))
				rec.DeadLetters = 1
				rec.Objects = append(rec.Objects, lake.CommittedObject{Key: dl, Kind: lake.KindDeadLetter, Rows: 1, Size: 3, Checksum: lake.Checksum([]byte("{}\n"))})
			}
			if err := l.Commit(t.Context(), rec); err != nil {
				t.Fatal(err)
			}
			objs[key] = o
		}
	}
	return objs
}

func put(t *testing.T, b objstore.Bucket, key string, data []byte) {
	t.Helper()
	if err := b.Put(t.Context(), key, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
}

// compaction builds a record replacing keys by one new object (written to
// the bucket, data first) holding their rows.
func compaction(t *testing.T, b objstore.Bucket, live []lake.LiveObject, keys ...string) lake.CompactionRecord {
	t.Helper()
	rec := lake.CompactionRecord{Table: "t", Hour: compHour, ID: lake.CompactionID(keys), Writer: "c1"}
	out := lake.CommittedObject{Key: lake.CompactedObjectKey("t", compHour, rec.ID, "a1", 0), Kind: lake.KindRaw, Size: 7, Checksum: lake.Checksum([]byte("compact")),
		MinEventTimeMicros: 1<<63 - 1, MaxEventTimeMicros: -1 << 63}
	for _, k := range keys {
		i := slices.IndexFunc(live, func(o lake.LiveObject) bool { return o.Key == k })
		if i < 0 {
			t.Fatalf("%s is not live", k)
		}
		o := live[i]
		rec.Replaced = append(rec.Replaced, lake.ReplacedObject{Key: k, Rows: o.Rows, Size: o.Size})
		out.Rows += o.Rows
		out.MinEventTimeMicros = min(out.MinEventTimeMicros, o.MinEventTimeMicros)
		out.MaxEventTimeMicros = max(out.MaxEventTimeMicros, o.MaxEventTimeMicros)
	}
	put(t, b, out.Key, []byte("compact"))
	rec.Objects = []lake.CommittedObject{out}
	return rec
}

func liveKeys(t *testing.T, l *lake.CommitLog) ([]lake.LiveObject, map[string]bool, int64) {
	t.Helper()
	live, err := l.LiveObjects(t.Context(), "t")
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]bool{}
	var rows int64
	for _, o := range live {
		if keys[o.Key] {
			t.Fatalf("%s listed twice", o.Key)
		}
		keys[o.Key] = true
		rows += o.Rows
	}
	return live, keys, rows
}

func TestLiveObjects(t *testing.T) {
	ctx := t.Context()
	b := objstoretest.NewLocal(t)
	l := lake.NewCommitLog(b)
	objs := compFixture(t, b, l, []string{"0", "1"}, 3)
	live, keys, rows := liveKeys(t, l)
	if len(live) != 6 || rows != 60 {
		t.Fatalf("without compaction: %d objects, %d rows; want 6, 60", len(live), rows)
	}
	for k := range objs {
		if !keys[k] {
			t.Errorf("committed %s is not live", k)
		}
	}
	for _, o := range live {
		if o.Source != "kafka:e" || o.Partition == "" || o.Compaction != "" || o.CommittedAt.IsZero() {
			t.Errorf("ingest object %+v lacks its source, partition or commit time", o)
		}
	}
	if dl, err := l.LiveDeadLetters(ctx, "t"); err != nil || len(dl) != 2 {
		t.Fatalf("dead letters = %d, %v; want 2", len(dl), err)
	}

	p0 := []string{live[0].Key, live[1].Key}    // partition 0
	mixed := []string{live[2].Key, live[3].Key} // partitions 0 and 1
	for _, keys := range [][]string{p0, mixed} {
		if _, err := l.CommitCompaction(ctx, compaction(t, b, live, keys...)); err != nil {
			t.Fatal(err)
		}
	}
	live2, keys2, rows2 := liveKeys(t, l)
	if len(live2) != 4 || rows2 != 60 {
		t.Fatalf("after two compactions: %d objects, %d rows; want 4, 60", len(live2), rows2)
	}
	for _, k := range append(p0, mixed...) {
		if keys2[k] {
			t.Errorf("replaced %s is still live", k)
		}
	}
	for _, o := range live2 {
		if o.Compaction == "" {
			continue
		}
		if o.Rows != 20 {
			t.Errorf("compacted %s has %d rows, want 20", o.Key, o.Rows)
		}
		switch o.Key {
		case lake.CompactedObjectKey("t", compHour, lake.CompactionID(p0), "a1", 0):
			if o.Source != "kafka:e" || o.Partition != "0" {
				t.Errorf("object of one partition lost it: %+v", o)
			}
		case lake.CompactedObjectKey("t", compHour, lake.CompactionID(mixed), "a1", 0):
			if o.Source != "kafka:e" || o.Partition != "" {
				t.Errorf("object of two partitions names one: %+v", o)
			}
		default:
			t.Errorf("unexpected compacted object %s", o.Key)
		}
	}

	// Compacting compacted objects again (nested) keeps the rows.
	var again []string
	for _, o := range live2 {
		if o.Compaction != "" {
			again = append(again, o.Key)
		}
	}
	if _, err := l.CommitCompaction(ctx, compaction(t, b, live2, again...)); err != nil {
		t.Fatal(err)
	}
	// A fresh log (no cache) sees the same.
	live3, _, rows3 := liveKeys(t, lake.NewCommitLog(b))
	if len(live3) != 3 || rows3 != 60 {
		t.Fatalf("after nested compaction: %d objects, %d rows; want 3, 60", len(live3), rows3)
	}
	recs, anomalies, err := l.Compactions(ctx, "t")
	if err != nil || len(recs) != 3 || len(anomalies) != 0 {
		t.Fatalf("compactions = %d, anomalies %v, %v; want 3 and none", len(recs), anomalies, err)
	}
	for i, r := range recs {
		if r.Seq != int64(i) {
			t.Errorf("record %d has seq %d", i, r.Seq)
		}
	}
}

// Compactors race over overlapping and disjoint sets of the same hour: of
// each overlapping family exactly one applies, disjoint ones all apply, and
// every row stays in exactly one live object.
func TestCompactionRace(t *testing.T) {
	for round := range 5 {
		t.Run(fmt.Sprintf("round %d", round), func(t *testing.T) {
			b := objstoretest.NewLocal(t)
			setup := lake.NewCommitLog(b)
			compFixture(t, b, setup, []string{"0", "1", "2"}, 4)
			live, _, _ := liveKeys(t, setup)
			k := func(i int) string { return live[i].Key }
			sets := [][]string{
				{k(0), k(1), k(2)}, {k(2), k(3)}, {k(0), k(1), k(2)}, {k(1), k(4)}, // overlapping family
				{k(6), k(7)}, {k(8), k(9)}, {k(10), k(11)}, // disjoint
			}
			recs := make([]lake.CompactionRecord, len(sets))
			for i, s := range sets {
				recs[i] = compaction(t, b, live, s...)
			}
			errs := make([]error, len(sets))
			var wg sync.WaitGroup
			for i := range sets {
				wg.Go(func() {
					// Each compactor has its own log, as separate processes do.
					_, errs[i] = lake.NewCommitLog(b).CommitCompaction(t.Context(), recs[i])
				})
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil && !(i < 4 && errors.Is(err, lake.ErrCompactionConflict)) {
					t.Errorf("compactor %d: %v", i, err)
				}
			}
			applied, anomalies, err := lake.NewCommitLog(b).Compactions(t.Context(), "t")
			if err != nil || len(anomalies) != 0 {
				t.Fatalf("anomalies %v, %v", anomalies, err)
			}
			// Applied records replace disjoint sets of committed objects, and
			// every set left out overlaps one that applied.
			owner := map[string]int{}
			for i, r := range applied {
				for _, o := range r.Replaced {
					if j, ok := owner[o.Key]; ok {
						t.Fatalf("%s replaced by records %d and %d", o.Key, j, i)
					}
					owner[o.Key] = i
				}
			}
			for i, s := range sets {
				in := 0
				for _, k := range s {
					if _, ok := owner[k]; ok {
						in++
					}
				}
				if in == 0 {
					t.Errorf("set %d applied nowhere and overlaps nothing applied", i)
				}
				if in == len(s) && errs[i] != nil {
					t.Errorf("set %d applied but its compactor got %v", i, errs[i])
				}
			}
			_, _, rows := liveKeys(t, lake.NewCommitLog(b))
			if rows != 120 {
				t.Fatalf("live rows = %d, want 120", rows)
			}
		})
	}
}

// A compactor that dies after writing its objects but before its record
// changes nothing for readers; its objects become orphans.
func TestCompactionCrashBeforeRecord(t *testing.T) {
	b := objstoretest.NewLocal(t)
	l := lake.NewCommitLog(b)
	compFixture(t, b, l, []string{"0"}, 3)
	before, _, _ := liveKeys(t, l)
	rec := compaction(t, b, before, before[0].Key, before[1].Key) // objects written, no record
	after, _, _ := liveKeys(t, l)
	if !slices.EqualFunc(before, after, func(a, b lake.LiveObject) bool { return a.Key == b.Key }) {
		t.Fatalf("live set changed without a record: %v -> %v", before, after)
	}
	time.Sleep(20 * time.Millisecond)
	orphans, err := l.Orphans(t.Context(), "t", 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if len(orphans) != 1 || orphans[0].Key != rec.Objects[0].Key {
		t.Fatalf("orphans = %v, want only the uncommitted compacted object", orphans)
	}
	// The retry after the crash (same inputs, same keys) commits.
	if _, err := l.CommitCompaction(t.Context(), rec); err != nil {
		t.Fatal(err)
	}
	if _, keys, rows := liveKeys(t, l); !keys[rec.Objects[0].Key] || rows != 30 {
		t.Fatalf("after the retry: %v, %d rows", keys, rows)
	}
}

// Replaced objects stay until their record is older than the grace period;
// compacted objects are never orphans.
func TestCompactionOrphans(t *testing.T) {
	ctx := t.Context()
	b := objstoretest.NewLocal(t)
	l := lake.NewCommitLog(b)
	compFixture(t, b, l, []string{"0"}, 3)
	live, _, _ := liveKeys(t, l)
	rec := compaction(t, b, live, live[0].Key, live[1].Key)
	if _, err := l.CommitCompaction(ctx, rec); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	if o, err := l.Orphans(ctx, "t", time.Hour); err != nil || len(o) != 0 {
		t.Fatalf("within grace: orphans %v, %v; want none", o, err)
	}
	n, err := l.DeleteOrphans(ctx, "t", 10*time.Millisecond)
	if err != nil || n != 2 {
		t.Fatalf("past grace: deleted %d, %v; want the 2 replaced objects", n, err)
	}
	for _, k := range []string{live[0].Key, live[1].Key} {
		if _, err := b.Attributes(ctx, k); !objstore.IsNotExist(err) {
			t.Errorf("replaced %s still exists: %v", k, err)
		}
	}
	after, keys, rows := liveKeys(t, lake.NewCommitLog(b))
	if len(after) != 2 || rows != 30 || !keys[rec.Objects[0].Key] {
		t.Fatalf("after deleting replaced objects: %v, %d rows", keys, rows)
	}
	for _, o := range after {
		if _, err := b.Attributes(ctx, o.Key); err != nil {
			t.Errorf("live %s is gone: %v", o.Key, err)
		}
	}
}

func TestCompactionInvalidRecords(t *testing.T) {
	ctx := t.Context()
	b := objstoretest.NewLocal(t)
	l := lake.NewCommitLog(b)
	compFixture(t, b, l, []string{"0"}, 3)
	live, _, _ := liveKeys(t, l)
	good := compaction(t, b, live, live[0].Key, live[1].Key)

	cases := []struct {
		name   string
		mutate func(*lake.CompactionRecord)
	}{
		{"rows do not add up", func(r *lake.CompactionRecord) { r.Objects[0].Rows++ }},
		{"object outside the hour", func(r *lake.CompactionRecord) { r.Objects[0].Key = "t/dt=2024-05-01/hour=14/x.parquet" }},
		{"wrong id", func(r *lake.CompactionRecord) { r.ID = "abc" }},
		{"event time outside the hour", func(r *lake.CompactionRecord) { r.Objects[0].MaxEventTimeMicros = compHour.Add(time.Hour).UnixMicro() }},
		{"dead letter", func(r *lake.CompactionRecord) { r.Objects[0].Kind = lake.KindDeadLetter }},
		{"hour not aligned", func(r *lake.CompactionRecord) { r.Hour = compHour.Add(time.Minute) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := good
			r.Objects = slices.Clone(good.Objects)
			tc.mutate(&r)
			if _, err := l.CommitCompaction(ctx, r); !errors.Is(err, lake.ErrInvalidCommit) {
				t.Fatalf("err = %v, want ErrInvalidCommit", err)
			}
		})
	}
	t.Run("stale sizes conflict", func(t *testing.T) {
		r := good
		r.Replaced = slices.Clone(good.Replaced)
		r.Replaced[0].Size++
		if _, err := l.CommitCompaction(ctx, r); !errors.Is(err, lake.ErrCompactionConflict) {
			t.Fatalf("err = %v, want ErrCompactionConflict", err)
		}
	})

	// Records written behind the log's back: garbage and one replacing a
	// key that is not live are ignored and reported.
	put(t, b, lake.CompactionKey("t", compHour, 0), []byte("{not json"))
	bad := good
	bad.Version, bad.Seq = lake.CompactionRecordVersion, 1
	bad.Replaced = []lake.ReplacedObject{{Key: lake.RawHourPrefix("t", compHour) + "never-committed.parquet", Rows: 20, Size: 3}}
	bad.ID = lake.CompactionID([]string{bad.Replaced[0].Key})
	bad.Rows = 20
	data := fmt.Appendf(nil, `{"version":1,"table":"t","hour":%q,"seq":1,"id":%q,"replaced":[{"key":%q,"rows":20,"size":3}],"objects":[{"key":%q,"kind":"raw","rows":20,"size":7,"min_event_time_us":%d,"max_event_time_us":%d}],"rows":20}`,
		compHour.Format(time.RFC3339), bad.ID, bad.Replaced[0].Key, good.Objects[0].Key, good.Objects[0].MinEventTimeMicros, good.Objects[0].MaxEventTimeMicros)
	put(t, b, lake.CompactionKey("t", compHour, 1), data)
	fresh := lake.NewCommitLog(b)
	after, _, rows := liveKeys(t, fresh)
	if len(after) != 3 || rows != 30 {
		t.Fatalf("invalid records changed the view: %d objects, %d rows", len(after), rows)
	}
	if _, anomalies, err := fresh.Compactions(ctx, "t"); err != nil || len(anomalies) != 2 {
		t.Fatalf("anomalies = %v, %v; want 2", anomalies, err)
	}
	// The good record still commits, after the numbers the bad ones hold.
	got, err := fresh.CommitCompaction(ctx, good)
	if err != nil || got.Seq != 2 {
		t.Fatalf("commit after garbage: seq %d, %v; want 2", got.Seq, err)
	}
	if _, _, rows := liveKeys(t, fresh); rows != 30 {
		t.Fatalf("rows = %d, want 30", rows)
	}
}
