package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/inspect"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/objstore/objstoretest"
)

// testLake is a lake with one table whose hour was compacted: two committed
// objects (100 and 50 rows) replaced by one of 150, and an orphan of a
// failed flush (30 rows) that no record names.
func testLake(t *testing.T) (root string, committedRows int64) {
	t.Helper()
	ctx := context.Background()
	root = t.TempDir()
	b, err := objstore.NewLocal(root)
	if err != nil {
		t.Fatal(err)
	}
	log := lake.NewCommitLog(b)
	hour := t0.Truncate(time.Hour)
	prefix := lake.RawHourPrefix("events", hour)
	object := func(name string, rows int) lake.CommittedObject {
		key := prefix + name
		p := filepath.Join(root, filepath.FromSlash(key))
		writeParquet(t, p, t0, rows, 1000)
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return lake.CommittedObject{Key: key, Kind: lake.KindRaw, Rows: int64(rows), Size: int64(len(data)), Checksum: lake.Checksum(data),
			MinEventTimeMicros: t0.UnixMicro(), MaxEventTimeMicros: t0.Add(time.Duration(rows) * time.Second).UnixMicro()}
	}
	a, c := object("kafka:events-0-0-w1.parquet", 100), object("kafka:events-0-100-w1.parquet", 50)
	end, err := log.Open(ctx, "events", "kafka:events", "0", "w1", func(context.Context) (lake.Genesis, error) {
		return lake.Genesis{At: lake.PositionOf(0), Reason: "test"}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []lake.CommittedObject{a, c} {
		next := end.Next
		for range o.Rows {
			next = next.Succ()
		}
		if err := log.Commit(ctx, lake.CommitRecord{Table: "events", Source: "kafka:events", Partition: "0", Seq: end.Seq, Kind: lake.LinkData,
			First: end.Next, Next: next, Records: o.Rows, Objects: []lake.CommittedObject{o}, Writer: "w1"}); err != nil {
			t.Fatal(err)
		}
		end.Seq, end.Next = end.Seq+1, next
	}
	keys := []string{a.Key, c.Key}
	merged := object("compacted-"+lake.CompactionID(keys)+"-0.parquet", 150)
	if _, err := log.CommitCompaction(ctx, lake.CompactionRecord{Table: "events", Hour: hour, ID: lake.CompactionID(keys),
		Replaced: []lake.ReplacedObject{{Key: a.Key, Rows: a.Rows, Size: a.Size}, {Key: c.Key, Rows: c.Rows, Size: c.Size}},
		Objects:  []lake.CommittedObject{merged}, Rows: 150, Writer: "compactor"}); err != nil {
		t.Fatal(err)
	}
	object("kafka:events-0-150-w2.parquet", 30) // an orphan: no record names it
	return root, 150
}

// `sluice inspect --summary` over a lake counts the committed set once:
// not the objects a compaction replaced (still there during the grace
// period), not orphans. Outside a lake it still sums every object.
func TestInspectSummaryReadsCommittedSet(t *testing.T) {
	root, want := testLake(t)
	for _, tc := range []struct {
		name, target string
		rows         int64
		objects      int
		notCommitted int
	}{
		{name: "table directory", target: filepath.Join(root, "events"), rows: want, objects: 1, notCommitted: 3},
		{name: "lake root", target: root, rows: want, objects: 1, notCommitted: 3},
		{name: "hour directory", target: filepath.Join(root, "events", "dt="+t0.Format(time.DateOnly)), rows: want, objects: 1, notCommitted: 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, stderr := runCmd(t, "inspect", "--summary", "--format", "json", "-n", "0", tc.target)
			if code != exitOK {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			var sum inspect.SummaryReport
			if err := json.Unmarshal([]byte(out), &sum); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if sum.Rows != tc.rows || sum.Objects != tc.objects {
				t.Errorf("rows %d in %d objects, want %d in %d (the committed set)", sum.Rows, sum.Objects, tc.rows, tc.objects)
			}
			if sum.Lake == nil || sum.Lake.NotCommitted != tc.notCommitted {
				t.Errorf("lake = %+v, want %d objects not committed", sum.Lake, tc.notCommitted)
			}
		})
	}

	// Another store nested in the lake's directory is not part of it.
	nested := filepath.Join(root, "summaries", "events")
	if err := os.CopyFS(nested, os.DirFS(filepath.Join(root, "events"))); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := runCmd(t, "inspect", "--summary", "--format", "json", "-n", "0", nested)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var nestedSum inspect.SummaryReport
	if err := json.Unmarshal([]byte(out), &nestedSum); err != nil {
		t.Fatal(err)
	}
	if nestedSum.Lake != nil || nestedSum.Objects != 4 {
		t.Errorf("a directory nested in the lake but not of it: %d objects, lake %+v; want every object (4), no lake", nestedSum.Objects, nestedSum.Lake)
	}

	// A copy of the objects without the lake's records is just files.
	loose := t.TempDir()
	if err := os.CopyFS(loose, os.DirFS(filepath.Join(root, "events"))); err != nil {
		t.Fatal(err)
	}
	code, out, stderr = runCmd(t, "inspect", "--summary", "--format", "json", "-n", "0", loose)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var sum inspect.SummaryReport
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatal(err)
	}
	if sum.Lake != nil || sum.Objects != 4 || sum.Rows != 330 {
		t.Errorf("outside a lake: %d rows in %d objects (lake %+v), want every object: 330 in 4", sum.Rows, sum.Objects, sum.Lake)
	}
}

// The same over S3, with the lake under a prefix of the bucket (a real S3
// server: scripts/versitygw.sh start && . .testenv/versitygw.env).
func TestInspectSummaryS3CommittedSet(t *testing.T) {
	cfg := objstoretest.S3Config(t)
	cfg.Prefix = "lakes/one"
	root, want := testLake(t)
	b := objstoretest.OpenS3(t, cfg, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	uploadDir(t, ctx, b, root)
	s3Args := []string{"--s3-endpoint", cfg.Endpoint, "--s3-insecure", "--s3-path-style", "--s3-region", "us-east-1",
		"--s3-access-key", cfg.AccessKey, "--s3-secret-key", cfg.SecretKey, "--summary", "--format", "json", "-n", "0"}
	for _, target := range []string{"s3://" + cfg.Bucket + "/lakes/one/events/", "s3://" + cfg.Bucket + "/lakes/one/events/dt=" + t0.Format(time.DateOnly)} {
		code, out, stderr := runCmd(t, "inspect", append(s3Args, target)...)
		if code != exitOK {
			t.Fatalf("%s: exit %d: %s", target, code, stderr)
		}
		var sum inspect.SummaryReport
		if err := json.Unmarshal([]byte(out), &sum); err != nil {
			t.Fatal(err)
		}
		if sum.Rows != want || sum.Objects != 1 || sum.Lake == nil || sum.Lake.NotCommitted != 3 || sum.Lake.Root != "s3://"+cfg.Bucket+"/lakes/one/" {
			t.Errorf("%s: %d rows in %d objects, lake %+v; want %d rows in 1 object, 3 not committed, root s3://%s/lakes/one/", target, sum.Rows, sum.Objects, sum.Lake, want, cfg.Bucket)
		}
	}
}
