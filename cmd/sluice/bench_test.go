package main

import (
	"log/slog"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/objstore/objstoretest"
)

// The aggregation benchmark runs the real pass as its own process over a
// lake it prepared, and the pass summarises every closed window: the
// figures it prints are of the path a user runs, not of an empty one.
func TestBenchAggregatePass(t *testing.T) {
	bin := testkit.SluiceBinary(t)
	args := []string{"bench", "aggregate", "--events", "20000", "--events-per-second", "10", "--rounds", "1", "--log-level", "warn"}
	run := func(t *testing.T, extra ...string) string {
		t.Helper()
		out, err := exec.Command(bin, append(args, extra...)...).Output()
		if err != nil {
			t.Fatalf("bench aggregate: %v\n%s", err, out)
		}
		m := regexp.MustCompile(`(\d+) windows summarised`).FindSubmatch(out)
		if m == nil {
			t.Fatalf("no pass report in:\n%s", out)
		}
		// 20,000 events at 10/s: 2,000 s of event time, 33 closed minutes.
		if n, _ := strconv.Atoi(string(m[1])); n < 30 {
			t.Fatalf("%d windows summarised, want 30 or more:\n%s", n, out)
		}
		if !regexp.MustCompile(`round 1: .* rows/s, .* CPU-s per M rows, peak RSS [1-9]\d* MiB`).Match(out) {
			t.Fatalf("no measurement in:\n%s", out)
		}
		return string(out)
	}
	t.Run("local", func(t *testing.T) {
		dir := t.TempDir()
		run(t, "--work-dir", dir)
		sums, _ := filepath.Glob(filepath.Join(dir, "summaries", "events", "1m", "*", "*.parquet"))
		if len(sums) == 0 {
			t.Fatal("no summary objects written")
		}
		// The same directory again: the lake there is refused, with a
		// reason, rather than waiting forever for flushes of events that
		// were all committed before.
		cmd := exec.Command(bin, append(args, "--work-dir", dir)...)
		done := make(chan struct{})
		var out []byte
		var err error
		go func() { out, err = cmd.CombinedOutput(); close(done) }()
		select {
		case <-done:
		case <-time.After(2 * time.Minute):
			_ = cmd.Process.Kill()
			<-done
			t.Fatalf("bench aggregate over a used --work-dir did not end:\n%s", out)
		}
		if err == nil || !strings.Contains(string(out), "already holds a lake") {
			t.Fatalf("bench aggregate over a used --work-dir: %v\n%s", err, out)
		}
	})
	t.Run("s3", func(t *testing.T) {
		cfg := objstoretest.S3Config(t)
		objstoretest.OpenS3(t, cfg, slog.New(slog.DiscardHandler)) // creates the bucket, removes it after
		run(t, "--work-dir", t.TempDir(), "--s3-endpoint", cfg.Endpoint, "--s3-bucket", cfg.Bucket,
			"--s3-access-key", cfg.AccessKey, "--s3-secret-key", cfg.SecretKey,
			"--s3-insecure", "--s3-path-style")
	})
}
