package main

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/ingest/kinesis/kinesistest"
	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/objstore"
)

// TestBenchIngestKinesis runs `sluice bench ingest --source kinesis` end to
// end on a tiny stream and checks, from the Parquet objects it left, that
// every event put was committed once.
func TestBenchIngestKinesis(t *testing.T) {
	endpoint := kinesistest.Endpoint(t)
	bin := testkit.SluiceBinary(t)
	work := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const events = 3000
	cmd := exec.CommandContext(ctx, bin, "bench", "ingest", "--source", "kinesis", "--kinesis-endpoint", endpoint,
		"--events", "3000", "--partitions", "3", "--users", "50", "--idle", "1s", "--work-dir", work, "--log-level", "warn")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bench ingest: %v\n%s", err, out)
	}
	for _, want := range []string{"ingest benchmark, kinesis", "events            3000 in 3 partitions", "CPU-s per 1M", "CPU-s/s over 1s with nothing to read", "peak RSS"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// The ingester's kernel time and page faults come from its rusage: a
	// process that ran at all faulted pages in.
	if m := regexp.MustCompile(`of it kernel +\S+ \((\d+) page faults`).FindStringSubmatch(string(out)); m == nil || m[1] == "0" {
		t.Errorf("output lacks the ingester's page faults (got %q):\n%s", m, out)
	}
	b, err := objstore.NewLocal(filepath.Join(work, "lake"))
	if err != nil {
		t.Fatal(err)
	}
	c := kinesistest.ReadCommitted(t, b, "events")
	if len(c.Rows) != events || c.Count() != events {
		t.Fatalf("lake holds %d rows of %d distinct events, want %d once each", c.Count(), len(c.Rows), events)
	}
	shards := map[string]bool{}
	for _, s := range c.Rows {
		shards[s[0]] = true
	}
	if len(shards) != 3 {
		t.Errorf("events committed from %d shards, want 3: %v", len(shards), shards)
	}
}

// TestBenchIngestUsage: bad command lines are usage errors, before any
// broker or stream is touched.
func TestBenchIngestUsage(t *testing.T) {
	for name, args := range map[string][]string{
		"unknown source":       {"--source", "pulsar"},
		"kinesis, no endpoint": {"--source", "kinesis"},
		"zero shards":          {"--source", "kinesis", "--kinesis-endpoint", "http://127.0.0.1:1", "--partitions", "0"},
		"zero events":          {"--events", "0"},
	} {
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if code := run(ctx, append([]string{"bench", "ingest"}, args...), &stdout, &stderr); code != exitUsage {
				t.Fatalf("exit code %d, want %d; stderr:\n%s", code, exitUsage, stderr.String())
			}
		})
	}
}
