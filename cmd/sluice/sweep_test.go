package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/objstore/objstoretest"
)

// sluice sweep on a local lake: a dry run lists the uncommitted objects and
// deletes nothing; the real run deletes them and keeps what is committed.
func TestSweepCommand(t *testing.T) {
	dir := t.TempDir()
	lakeDir := filepath.Join(dir, "lake")
	b, err := objstore.NewLocal(lakeDir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	l := lake.NewCommitLog(b)
	if _, err := l.Open(ctx, "events", "kafka:events", "0", "w", func(context.Context) (lake.Genesis, error) { return lake.Genesis{}, nil }); err != nil {
		t.Fatal(err)
	}
	committed := "events/dt=2024-05-01/hour=13/kafka-events-0-1-w.parquet"
	body := []byte("committed rows")
	objstoretest.Put(t, b, committed, body)
	if err := l.Commit(ctx, lake.CommitRecord{Table: "events", Source: "kafka:events", Partition: "0", Seq: 1, Kind: lake.LinkData,
		First: lake.PositionOf(0), Next: lake.PositionOf(5), Records: 5, Writer: "w",
		Objects: []lake.CommittedObject{{Key: committed, Kind: lake.KindRaw, Rows: 5, Size: int64(len(body)), Checksum: lake.Checksum(body)}}}); err != nil {
		t.Fatal(err)
	}
	orphan := "events/dt=2024-05-01/hour=13/kafka-events-0-2-killed.parquet"
	objstoretest.Put(t, b, orphan, []byte("a killed flush"))
	time.Sleep(1100 * time.Millisecond)

	cfgPath := filepath.Join(dir, "sluice.yaml")
	cfg := fmt.Sprintf(`store:
  local_dir: %q
summary_store:
  local_dir: %q
ingest:
  flush_timeout: 200ms
aggregate:
  compaction: {commit_within: 200ms}
  sweep: {grace: 500ms}
`, lakeDir, filepath.Join(dir, "summaries"))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	exists := func(k string) bool { _, err := b.Attributes(ctx, k); return err == nil }

	var stdout, stderr bytes.Buffer
	if code := run(ctx, []string{"sweep", "--config", cfgPath, "--dry-run"}, &stdout, &stderr); code != exitOK {
		t.Fatalf("dry run exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "would delete uncommitted "+orphan) || !exists(orphan) {
		t.Fatalf("dry run: orphan listed %v, still there %v; stdout:\n%s", strings.Contains(stdout.String(), orphan), exists(orphan), stdout.String())
	}

	stdout.Reset()
	stderr.Reset()
	if code := run(ctx, []string{"sweep", "--config", cfgPath, "--table", "events"}, &stdout, &stderr); code != exitOK {
		t.Fatalf("sweep exit %d: %s", code, stderr.String())
	}
	if exists(orphan) || !exists(committed) {
		t.Fatalf("after the sweep: orphan there %v, committed there %v", exists(orphan), exists(committed))
	}
	if !strings.Contains(stdout.String(), "events: deleted 1 objects") || !strings.Contains(stderr.String(), "sweep events") {
		t.Errorf("no summary or progress:\nstdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	}

	for _, tc := range []struct {
		name string
		args []string
	}{
		{"no config", []string{"sweep"}},
		{"unknown table", []string{"sweep", "--config", cfgPath, "--table", "nope"}},
		{"grace shorter than a flush", []string{"sweep", "--config", cfgPath, "--grace", "100ms"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if code := run(ctx, tc.args, &out, &errOut); code != exitUsage {
				t.Fatalf("exit %d, want %d; stderr: %s", code, exitUsage, errOut.String())
			}
		})
	}
}
