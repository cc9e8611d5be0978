package laketest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/objstore/objstoretest"
)

// SweepTest checks the sweeper on raw (the lake) and summaries (the summary
// store, another bucket). It uses tables named "sw_*" only. mtimeStep is the
// resolution of the stores' modification times (a second on S3, far finer
// on a local disk): the test waits 3 steps between objects that a grace of
// 2 steps must tell apart, so a finer store makes a quicker test (the
// local run is the one mutation testing repeats for every mutant).
func SweepTest(t *testing.T, raw, summaries objstore.Bucket, mtimeStep time.Duration) {
	grace := 2 * mtimeStep
	ctx := t.Context()
	const src = "kafka:events"
	hour := time.Date(2024, 5, 1, 13, 0, 0, 0, time.UTC)

	// commit writes link seq of partition "0" with one raw object in hour
	// h (and a dead letter in the same hour) and commits it.
	commit := func(t *testing.T, l *lake.CommitLog, table string, seq int64, h time.Time) lake.CommitRecord {
		t.Helper()
		if seq == 1 {
			if _, err := l.Open(ctx, table, src, "0", "w", func(context.Context) (lake.Genesis, error) {
				return lake.Genesis{SourceID: "topic-1"}, nil
			}); err != nil {
				t.Fatal(err)
			}
		}
		body := fmt.Appendf(nil, "parquet %d", seq)
		rawKey := fmt.Sprintf("%s%s-0-%d-w.parquet", lake.RawHourPrefix(table, h), "kafka-events", seq)
		dlKey := fmt.Sprintf("%s%s/dt=%s/hour=%02d/0-%d.jsonl", lake.DeadLetterRoot, table, h.Format(time.DateOnly), h.Hour(), seq)
		objstoretest.Put(t, raw, rawKey, body)
		objstoretest.Put(t, raw, dlKey, []byte("{}\n"))
		rec := lake.CommitRecord{Table: table, Source: src, Partition: "0", Seq: seq, Kind: lake.LinkData,
			First: lake.PositionOf((seq - 1) * 10), Next: lake.PositionOf(seq * 10), SourceID: "topic-1",
			Records: 9, DeadLetters: 1, Writer: "w",
			Objects: []lake.CommittedObject{
				{Key: rawKey, Kind: lake.KindRaw, Rows: 9, Size: int64(len(body)), Checksum: lake.Checksum(body),
					MinEventTimeMicros: h.UnixMicro(), MaxEventTimeMicros: h.Add(time.Minute).UnixMicro()},
				{Key: dlKey, Kind: lake.KindDeadLetter, Rows: 1, Size: 3, Checksum: lake.Checksum([]byte("{}\n"))},
			}}
		if err := l.Commit(ctx, rec); err != nil {
			t.Fatal(err)
		}
		return rec
	}
	exists := func(t *testing.T, b objstore.Bucket, key string) bool {
		t.Helper()
		_, err := b.Attributes(ctx, key)
		if err != nil && !objstore.IsNotExist(err) {
			t.Fatal(err)
		}
		return err == nil
	}
	sweeper := func(t *testing.T, cfg lake.SweepConfig, b objstore.Bucket, clock func() time.Time) (*lake.Sweeper, *prometheus.Registry) {
		t.Helper()
		reg := prometheus.NewRegistry()
		s, err := lake.NewSweeper(cfg, b, summaries, "sweeper-test", nil, lake.NewSweepMetrics(reg))
		if err != nil {
			t.Fatal(err)
		}
		if clock != nil {
			s.WithClock(clock)
		}
		return s, reg
	}
	keys := func(items []lake.SweepItem) []string {
		var out []string
		for _, it := range items {
			out = append(out, it.Kind+" "+it.Key)
		}
		slices.Sort(out)
		return out
	}

	t.Run("uncommitted objects older than the grace go, everything committed stays", func(t *testing.T) {
		const table = "sw_orphans"
		l := lake.NewCommitLog(raw)
		rec := commit(t, l, table, 1, hour)
		oldRaw := lake.RawHourPrefix(table, hour) + "crashed-flush.parquet"
		oldDL := lake.DeadLetterRoot + table + "/dt=2024-05-01/hour=13/crashed-flush.jsonl"
		neighbour := table + "x/dt=2024-05-01/hour=13/other-table.parquet"
		for _, k := range []string{oldRaw, oldDL, neighbour} {
			objstoretest.Put(t, raw, k, []byte("left behind"))
		}
		// 3 steps apart with a grace of 2 puts the first objects before
		// the cutoff and the next after it.
		time.Sleep(3 * mtimeStep)
		young := lake.RawHourPrefix(table, hour) + "flush-in-progress.parquet"
		objstoretest.Put(t, raw, young, []byte("being committed"))

		dry, _ := sweeper(t, lake.SweepConfig{Grace: grace, DryRun: true}, raw, nil)
		rep, err := dry.Sweep(ctx, table, lake.TableRetention{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"uncommitted " + oldDL, "uncommitted " + oldRaw}
		if got := keys(rep.Items); !slices.Equal(got, want) {
			t.Fatalf("dry run lists %q, want %q", got, want)
		}
		for _, k := range []string{oldRaw, oldDL} {
			if !exists(t, raw, k) {
				t.Fatalf("dry run deleted %s", k)
			}
		}

		s, reg := sweeper(t, lake.SweepConfig{Grace: grace}, raw, nil)
		s.InitTableMetrics(table)
		rep, err = s.Sweep(ctx, table, lake.TableRetention{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := keys(rep.Items); !slices.Equal(got, want) {
			t.Fatalf("sweep deleted %q, want %q", got, want)
		}
		for _, k := range []string{oldRaw, oldDL} {
			if exists(t, raw, k) {
				t.Errorf("uncommitted %s still there", k)
			}
		}
		for _, o := range rec.Objects {
			if !exists(t, raw, o.Key) {
				t.Errorf("committed %s was deleted", o.Key)
			}
		}
		if !exists(t, raw, young) {
			t.Error("an object younger than the grace was deleted: a flush in progress would lose it")
		}
		if !exists(t, raw, neighbour) {
			t.Error("another table's object was deleted")
		}
		if got := metricValue(t, reg, "sluice_lake_sweep_deleted_objects_total", table, lake.SweepUncommitted); got != 2 {
			t.Errorf("deleted objects metric = %v, want 2", got)
		}
		if got := metricValue(t, reg, "sluice_lake_sweep_deleted_bytes_total", table, lake.SweepUncommitted); got != float64(2*len("left behind")) {
			t.Errorf("deleted bytes metric = %v", got)
		}
		if got := metricValue(t, reg, "sluice_lake_sweep_runs_total", table, "ok"); got != 1 {
			t.Errorf("ok runs = %v, want 1", got)
		}
		if n, _ := testutil.GatherAndCount(reg, "sluice_lake_sweep_runs_total"); n != 3 {
			t.Errorf("%d run series, want ok, error, dry_run", n)
		}
	})

	t.Run("objects replaced by compaction go a grace after the record", func(t *testing.T) {
		const table = "sw_compacted"
		l := lake.NewCommitLog(raw)
		r1, r2 := commit(t, l, table, 1, hour), commit(t, l, table, 2, hour)
		// The record is stored 3 steps after the objects it replaces:
		// with a grace of 2 they are old, it is not.
		time.Sleep(3 * mtimeStep)
		body := []byte("compacted")
		ids := lake.CompactionID([]string{r1.Objects[0].Key, r2.Objects[0].Key})
		out := lake.CommittedObject{Key: lake.CompactedObjectKey(table, hour, ids, "a1", 0), Kind: lake.KindRaw, Rows: 18,
			Size: int64(len(body)), Checksum: lake.Checksum(body), MinEventTimeMicros: hour.UnixMicro(), MaxEventTimeMicros: hour.Add(time.Minute).UnixMicro()}
		objstoretest.Put(t, raw, out.Key, body)
		if _, err := l.CommitCompaction(ctx, lake.CompactionRecord{Table: table, Hour: hour, Writer: "c",
			Replaced: []lake.ReplacedObject{{Key: r1.Objects[0].Key, Rows: 9, Size: r1.Objects[0].Size}, {Key: r2.Objects[0].Key, Rows: 9, Size: r2.Objects[0].Size}},
			Objects:  []lake.CommittedObject{out}}); err != nil {
			t.Fatal(err)
		}
		before, err := l.LiveObjects(ctx, table)
		if err != nil {
			t.Fatal(err)
		}
		// The replaced objects are old, but the record is younger than the
		// grace: a reader that listed the objects before it may still read them.
		s, _ := sweeper(t, lake.SweepConfig{Grace: grace}, raw, nil)
		if rep, err := s.Sweep(ctx, table, lake.TableRetention{}, nil); err != nil || len(rep.Items) != 0 {
			t.Fatalf("sweep within the grace of the compaction = %q, %v; want nothing", keys(rep.Items), err)
		}
		s, _ = sweeper(t, lake.SweepConfig{Grace: time.Hour}, raw, func() time.Time { return time.Now().Add(2 * time.Hour) })
		rep, err := s.Sweep(ctx, table, lake.TableRetention{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"replaced " + r1.Objects[0].Key, "replaced " + r2.Objects[0].Key}
		if got := keys(rep.Items); !slices.Equal(got, want) {
			t.Fatalf("sweep deleted %q, want %q", got, want)
		}
		after, err := l.LiveObjects(ctx, table)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.EqualFunc(before, after, func(a, b lake.LiveObject) bool { return a.Key == b.Key }) {
			t.Fatalf("live view changed: %v -> %v", before, after)
		}
		for _, o := range after {
			if !exists(t, raw, o.Key) {
				t.Errorf("live object %s was deleted", o.Key)
			}
		}
		dead, err := l.LiveDeadLetters(ctx, table)
		if err != nil || len(dead) != 2 {
			t.Fatalf("dead letters %v, %v", dead, err)
		}
		for _, o := range dead {
			if !exists(t, raw, o.Key) {
				t.Errorf("dead letter %s was deleted", o.Key)
			}
		}
	})

	t.Run("retention retires whole hours through a record, then deletes them", func(t *testing.T) {
		const table = "sw_retention"
		l := lake.NewCommitLog(raw)
		now := time.Now().UTC()
		recent := now.Truncate(time.Hour)
		old := commit(t, l, table, 1, hour)
		keep := commit(t, l, table, 2, recent)
		oldSums := []string{table + "/1m/dt=2024-05-01/hour=13.parquet", table + "/1h/dt=2024-05-01/day.parquet"}
		keepSum := fmt.Sprintf("%s/1h/dt=%s/day.parquet", table, recent.Format(time.DateOnly))
		for _, k := range append(slices.Clone(oldSums), keepSum) {
			objstoretest.Put(t, summaries, k, []byte("summary"))
		}
		ret := lake.TableRetention{Raw: 48 * time.Hour, Summaries: 72 * time.Hour, Unit: 24 * time.Hour}

		dry, _ := sweeper(t, lake.SweepConfig{Grace: time.Hour, DryRun: true}, raw, nil)
		rep, err := dry.Sweep(ctx, table, ret, nil)
		if err != nil || !rep.Advanced || len(rep.Items) != 0 {
			t.Fatalf("dry run = advanced %v, items %q, %v; want advanced, nothing deletable yet", rep.Advanced, keys(rep.Items), err)
		}
		if h, err := l.Retention(ctx, table); err != nil || h != (lake.Horizon{}) {
			t.Fatalf("a dry run wrote a retention record: %+v, %v", h, err)
		}

		s, reg := sweeper(t, lake.SweepConfig{Grace: time.Hour}, raw, nil)
		rep, err = s.Sweep(ctx, table, ret, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := ret.Want(now)
		if !rep.Advanced || rep.Horizon != want || want.RawBefore.After(now.Add(-48*time.Hour)) || !want.RawBefore.Equal(want.RawBefore.Truncate(24*time.Hour)) {
			t.Fatalf("retention = %+v (advanced %v), want %+v: whole days, at least 48h ago", rep.Horizon, rep.Advanced, want)
		}
		if len(rep.Items) != 0 {
			t.Fatalf("deleted %q within the grace of the retention record", keys(rep.Items))
		}
		if got := metricValue(t, reg, "sluice_lake_retention_horizon_timestamp_seconds", table, "raw"); got != float64(want.RawBefore.Unix()) {
			t.Errorf("horizon metric %v, want %v", got, want.RawBefore.Unix())
		}
		// Readers drop the retired hour at once, its objects still there.
		live, err := l.LiveObjects(ctx, table)
		if err != nil || len(live) != 1 || live[0].Key != keep.Objects[0].Key {
			t.Fatalf("live after retention = %v, %v; want only %s", live, err, keep.Objects[0].Key)
		}
		dead, err := l.LiveDeadLetters(ctx, table)
		if err != nil || len(dead) != 1 || dead[0].Key != keep.Objects[1].Key {
			t.Fatalf("dead letters after retention = %v, %v", dead, err)
		}
		for _, o := range old.Objects {
			if !exists(t, raw, o.Key) {
				t.Fatalf("%s deleted before the grace", o.Key)
			}
		}
		// A second run changes nothing: no new record.
		if rep, err := s.Sweep(ctx, table, ret, nil); err != nil || rep.Advanced {
			t.Fatalf("second sweep advanced %v, %v", rep.Advanced, err)
		}

		later, _ := sweeper(t, lake.SweepConfig{Grace: time.Hour}, raw, func() time.Time { return now.Add(2 * time.Hour) })
		rep, err = later.Sweep(ctx, table, ret, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range old.Objects {
			if exists(t, raw, o.Key) {
				t.Errorf("retired %s still there", o.Key)
			}
		}
		for _, k := range oldSums {
			if exists(t, summaries, k) {
				t.Errorf("retired summary %s still there", k)
			}
		}
		for _, o := range keep.Objects {
			if !exists(t, raw, o.Key) {
				t.Errorf("%s, newer than the retention, was deleted", o.Key)
			}
		}
		if !exists(t, summaries, keepSum) {
			t.Errorf("summary %s, newer than the retention, was deleted", keepSum)
		}
		if n, _ := rep.Count(lake.SweepRetired); n != 2 {
			t.Errorf("%d retired objects deleted, want 2 (%q)", n, keys(rep.Items))
		}
		if n, _ := rep.Count(lake.SweepSummary); n != 2 {
			t.Errorf("%d summaries deleted, want 2 (%q)", n, keys(rep.Items))
		}
	})

	t.Run("retention race has one winner", func(t *testing.T) {
		const table = "sw_retention_race"
		want := lake.Horizon{RawBefore: hour.Add(24 * time.Hour)}
		var wg sync.WaitGroup
		changed := make([]bool, 4)
		for i := range changed {
			wg.Go(func() {
				h, ch, err := lake.NewCommitLog(raw).AdvanceRetention(ctx, table, want, fmt.Sprintf("w%d", i))
				if err != nil || h != want {
					t.Errorf("advance %d = %+v, %v; want %+v", i, h, err, want)
				}
				changed[i] = ch
			})
		}
		wg.Wait()
		if n := slices.Index(changed, true); n < 0 || slices.Index(changed[n+1:], true) >= 0 {
			t.Fatalf("writers that advanced the retention: %v; want exactly one", changed)
		}
		var recs []string
		if err := raw.Iter(ctx, lake.RetentionPrefix(table), func(a objstore.ObjectAttrs) error { recs = append(recs, a.Key); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(recs) != 1 {
			t.Fatalf("retention records %q, want one", recs)
		}
		// A stale writer asking for less never moves the horizon back.
		if h, ch, err := lake.NewCommitLog(raw).AdvanceRetention(ctx, table, lake.Horizon{RawBefore: hour}, "stale"); err != nil || ch || h != want {
			t.Fatalf("stale advance = %+v, %v, %v", h, ch, err)
		}
	})

	t.Run("abandoned uploads go after the grace", func(t *testing.T) {
		const table = "sw_uploads"
		key := lake.RawHourPrefix(table, hour) + "killed-mid-upload.parquet"
		abandoned := PlantUpload(t, raw, key)
		s, _ := sweeper(t, lake.SweepConfig{Grace: time.Hour}, raw, nil)
		if rep, err := s.Sweep(ctx, table, lake.TableRetention{}, nil); err != nil || len(rep.Items) != 0 {
			t.Fatalf("young upload swept: %q, %v", keys(rep.Items), err)
		}
		s, _ = sweeper(t, lake.SweepConfig{Grace: time.Hour}, raw, func() time.Time { return time.Now().Add(2 * time.Hour) })
		rep, err := s.Sweep(ctx, table, lake.TableRetention{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if n, _ := rep.Count(lake.SweepUpload); n != 1 {
			t.Fatalf("aborted %q, want the one upload", keys(rep.Items))
		}
		if abandoned() {
			t.Error("the upload is still there")
		}
	})

	t.Run("a record committed while sweeping keeps its object", func(t *testing.T) {
		const table = "sw_recheck"
		hb := objstoretest.NewHookBucket(raw)
		l := lake.NewCommitLog(raw)
		commit(t, l, table, 1, hour)
		// A slow writer's object, older than the grace, not yet committed.
		body := []byte("slow flush")
		slow := lake.RawHourPrefix(table, hour) + "slow-writer.parquet"
		objstoretest.Put(t, raw, slow, body)
		commits := 0
		hb.Before = func(op, key string) error {
			if op == "iter" && key == lake.CommitPrefix(table) {
				commits++
				if commits == 3 { // the sweep planned with the records, now it re-checks them
					rec := lake.CommitRecord{Table: table, Source: src, Partition: "0", Seq: 2, Kind: lake.LinkData,
						First: lake.PositionOf(10), Next: lake.PositionOf(20), SourceID: "topic-1", Records: 10, Writer: "slow",
						Objects: []lake.CommittedObject{{Key: slow, Kind: lake.KindRaw, Rows: 10, Size: int64(len(body)), Checksum: lake.Checksum(body)}}}
					if err := lake.NewCommitLog(raw).Commit(ctx, rec); err != nil {
						return err
					}
				}
			}
			return nil
		}
		s, _ := sweeper(t, lake.SweepConfig{Grace: time.Hour}, hb, func() time.Time { return time.Now().Add(2 * time.Hour) })
		rep, err := s.Sweep(ctx, table, lake.TableRetention{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if commits < 3 {
			t.Fatalf("the commit records were read %d times, the test expects a re-check", commits)
		}
		if !exists(t, raw, slow) {
			t.Fatalf("the object a record named during the sweep was deleted (%q)", keys(rep.Items))
		}
		if rep.Kept != 1 {
			t.Errorf("kept by the re-check = %d, want 1", rep.Kept)
		}
	})
}

// metricValue returns the value of the series of name whose label values
// are values (in any order), failing if there is none.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, values ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var got []string
			for _, lp := range m.GetLabel() {
				got = append(got, lp.GetValue())
			}
			want := slices.Clone(values)
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				continue
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no series %s%q", name, values)
	return 0
}

// PlantUpload leaves an incomplete upload for key and returns a function
// that reports whether it is still there.
func PlantUpload(t *testing.T, b objstore.Bucket, key string) func() bool {
	t.Helper()
	ctx := t.Context()
	switch s := b.(type) {
	case *objstore.S3:
		core := minio.Core{Client: s.Client()}
		bucket, prefix := s3BucketPrefix(t, s)
		id, err := core.NewMultipartUpload(ctx, bucket, prefix+key, minio.PutObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return func() bool {
			for u := range s.Client().ListIncompleteUploads(ctx, bucket, prefix+key, true) {
				if u.Err != nil {
					t.Fatal(u.Err)
				}
				if u.UploadID == id {
					return true
				}
			}
			return false
		}
	case *objstore.Local:
		dir := filepath.Join(s.Dir(), filepath.FromSlash(key[:len(key)-len(filepath.Base(key))]))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, ".sluice-tmp-12345")
		if err := os.WriteFile(p, []byte("half an object"), 0o644); err != nil {
			t.Fatal(err)
		}
		return func() bool { _, err := os.Stat(p); return err == nil }
	}
	t.Fatalf("no way to plant an upload in %T", b)
	return nil
}

// s3BucketPrefix returns the bucket name and key prefix of s, from its Name
// (s3://bucket/prefix (endpoint)).
func s3BucketPrefix(t *testing.T, s *objstore.S3) (string, string) {
	var bucket, rest string
	name := s.Name()
	if _, err := fmt.Sscanf(name, "s3://%s", &rest); err != nil {
		t.Fatalf("bucket name %q: %v", name, err)
	}
	bucket, prefix, _ := cutSlash(rest)
	return bucket, prefix
}

func cutSlash(s string) (string, string, bool) {
	for i := range len(s) {
		if s[i] == '/' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}
