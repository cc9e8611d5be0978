package inbox_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/ingest"
	"github.com/sluicehq/sluice/ingest/inbox"
	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
)

// The fault scenarios run real batch processes: this test binary started
// again with envWorker set runs passes over an inbox until nothing is left
// (or it is killed).
const (
	envWorker      = "SLUICE_INBOX_TEST_WORKER" // the directory holding lake/ and inbox/
	envWorkerSplit = "SLUICE_INBOX_TEST_SPLIT"  // split bytes
	envWorkerLease = "SLUICE_INBOX_TEST_LEASE"  // lease
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(envWorker); dir != "" {
		os.Exit(runWorker(dir))
	}
	os.Exit(m.Run())
}

// runWorker makes passes until a pass claims nothing and no file is left
// open, then exits 0.
func runWorker(dir string) int {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	fail := func(err error) int { logger.Error("worker", "err", err); return 2 }
	lakeB, err := objstore.NewLocal(filepath.Join(dir, "lake"))
	if err != nil {
		return fail(err)
	}
	inboxB, err := objstore.NewLocal(filepath.Join(dir, "inbox"))
	if err != nil {
		return fail(err)
	}
	split, _ := strconv.ParseInt(os.Getenv(envWorkerSplit), 10, 64)
	lease, _ := time.ParseDuration(os.Getenv(envWorkerLease))
	tables := tableList(testTables(nil), "ev", "cv", "pq")
	reg := prometheus.NewRegistry()
	w, err := ingest.NewWriter(ingest.WriterConfig{FlushRecords: 20_000, FlushBytes: 4 << 20, FlushInterval: time.Minute, Workers: 2}, lakeB, logger, ingest.NewMetrics(reg))
	if err != nil {
		return fail(err)
	}
	defer w.Close()
	src, err := inbox.NewSource(inbox.Config{SplitBytes: split, Parallel: 3, Lease: lease, ReconcileEvery: -1}, tables, lakeB,
		func(string) (objstore.Bucket, error) { return inboxB, nil }, w, logger, inbox.NewMetrics(reg))
	if err != nil {
		return fail(err)
	}
	defer src.Close()
	ctx := context.Background()
	for range 2000 {
		st, err := src.Pass(ctx)
		if err != nil {
			logger.Warn("pass", "err", err)
		}
		if st.Claimed == 0 {
			open := 0
			for _, t := range tables {
				l, _ := inbox.NewLedger(lakeB, t.Name)
				_ = l.Open(ctx, func(string, string) error { open++; return nil })
			}
			if open == 0 {
				return 0
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fail(fmt.Errorf("files still open after 2000 passes"))
}

func faultsOnly(t *testing.T) {
	if os.Getenv("SLUICE_FAULTS") != "1" {
		t.Skip("fault scenario: set SLUICE_FAULTS=1 (scripts/test.sh faults)")
	}
}

func startWorker(t *testing.T, dir string, split int64, lease time.Duration) *exec.Cmd {
	t.Helper()
	cmd := testkit.TestBinaryCmd(context.Background(), envWorker+"="+dir, envWorkerSplit+"="+strconv.FormatInt(split, 10), envWorkerLease+"="+lease.String())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}

// bigInbox writes about 210 files of every kind into dir/inbox: small and
// mid-sized JSON lines (plain, gzip, zstd), two large ones cut into many
// splits, CSV, Parquet, empty files and markers, with bad lines.
func bigInbox(t *testing.T, dir string, largeLines int) []genFile {
	inboxB, err := objstore.NewLocal(filepath.Join(dir, "inbox"))
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 11))
	var files []genFile
	comps := []string{"none", "none", "gzip", "zstd"}
	for i := range 160 {
		files = append(files, textFile(t, rng, "ev", 1000+i, 20+rng.IntN(800), 0.03, comps[rng.IntN(len(comps))]))
	}
	files = append(files, textFile(t, rng, "ev", 2000, largeLines, 0.0005, "none"))
	files = append(files, textFile(t, rng, "ev", 2001, largeLines/4, 0.001, "none"))
	files = append(files, textFile(t, rng, "ev", 2100, largeLines/8, 0.001, "gzip"))
	for i := range 30 {
		files = append(files, textFile(t, rng, "cv", 3000+i, 20+rng.IntN(600), 0.03, comps[rng.IntN(len(comps))]))
	}
	for i := range 15 {
		files = append(files, parquetFile(t, rng, 4000+i, 50+rng.IntN(900), 200))
	}
	for _, f := range files {
		put(t, inboxB, f.Key, f.Data)
	}
	for i := range 10 {
		put(t, inboxB, fmt.Sprintf("in/ev/2026/empty-%02d.jsonl", i), nil)
	}
	put(t, inboxB, "in/ev/2026/_SUCCESS", []byte("x"))
	put(t, inboxB, "in/cv/.staging.csv", []byte("ts,id\n"))
	return files
}

func verifyAll(t *testing.T, dir string, files []genFile, split int64) {
	t.Helper()
	lakeB, _ := objstore.NewLocal(filepath.Join(dir, "lake"))
	inboxB, _ := objstore.NewLocal(filepath.Join(dir, "inbox"))
	versions := versionsOf(t, inboxB, files)
	for _, table := range []string{"ev", "cv", "pq"} {
		v := verify(t, lakeB, table, files, split, versions)
		t.Logf("table %s: %s", table, v)
		if !v.ok() || v.Rows == 0 {
			t.Errorf("table %s: %s", table, v)
		}
	}
	for _, table := range []string{"ev", "cv", "pq"} {
		l, _ := inbox.NewLedger(lakeB, table)
		open := 0
		_ = l.Open(t.Context(), func(string, string) error { open++; return nil })
		if open != 0 {
			t.Errorf("table %s: %d files still open in the ledger", table, open)
		}
	}
}

// TestFaultsBatchKill SIGKILLs batch processes at random moments while they
// ingest ~210 files, then lets one finish, and checks the committed set
// against the files: every good line once, every bad line a dead letter
// once, at its own file, split and line, locating its line in the file.
func TestFaultsBatchKill(t *testing.T) {
	faultsOnly(t)
	dir := t.TempDir()
	const split = 8 << 20
	files := bigInbox(t, dir, 1_200_000) // the largest file: ~110 MB, 14 splits
	var size int64
	for _, f := range files {
		size += int64(len(f.Data))
	}
	t.Logf("%d files, %d bytes", len(files), size)
	rng := rand.New(rand.NewPCG(3, 5))
	kills := 0
	for kills < 22 {
		cmd := startWorker(t, dir, split, 3*time.Second)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			t.Fatalf("worker finished before kill %d (%v): the scenario needs more work", kills+1, err)
		case <-time.After(time.Duration(300+rng.IntN(1500)) * time.Millisecond):
		}
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-done
		kills++
	}
	cmd := startWorker(t, dir, split, 3*time.Second)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("final worker: %v", err)
	}
	t.Logf("%d kills", kills)
	verifyAll(t, dir, files, split)
}

// TestFaultsBatchShared runs two, then three batch processes on one inbox
// at once: besides the committed set being exact, no file is claimed twice
// (each entry's epoch is 1) and every split's links come from one process.
func TestFaultsBatchShared(t *testing.T) {
	faultsOnly(t)
	for _, procs := range []int{2, 3} {
		t.Run(fmt.Sprintf("%d processes", procs), func(t *testing.T) {
			dir := t.TempDir()
			const split = 1 << 20
			files := bigInbox(t, dir, 40_000)
			var wg sync.WaitGroup
			errs := make([]error, procs)
			for i := range procs {
				cmd := startWorker(t, dir, split, 20*time.Second)
				wg.Add(1)
				go func() { defer wg.Done(); errs[i] = cmd.Wait() }()
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Fatalf("process %d: %v", i, err)
				}
			}
			verifyAll(t, dir, files, split)
			lakeB, _ := objstore.NewLocal(filepath.Join(dir, "lake"))
			checkDoneOnce(t, lakeB, []string{"ev", "cv", "pq"}, procs)
		})
	}
}

// checkDoneOnce fails if a file was claimed twice or a split's data links
// were written by more than one process, and reports how the work spread.
func checkDoneOnce(t *testing.T, lakeB objstore.Bucket, tables []string, procs int) {
	t.Helper()
	ctx := t.Context()
	writers := map[string]int{}
	for _, table := range tables {
		chains, err := lake.NewCommitLog(lakeB).Chains(ctx, table)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range chains {
			by := map[string]bool{}
			for _, r := range c.Records {
				if r.Kind == lake.LinkData {
					by[r.Writer] = true
					writers[r.Writer]++
				}
			}
			if len(by) > 1 {
				t.Errorf("split %s was mapped by %d processes", c.Partition, len(by))
			}
		}
	}
	entries := ledgerEntries(t, lakeB, tables)
	for _, e := range entries {
		if e.Epoch != 1 || e.State != inbox.StateCommitted {
			t.Errorf("file %s: state %s, epoch %d: want committed at its first claim", e.Key, e.State, e.Epoch)
		}
	}
	t.Logf("%d files; data links by process: %v", len(entries), writers)
	if len(writers) < procs {
		t.Errorf("only %d of %d processes did any work", len(writers), procs)
	}
}

func ledgerEntries(t *testing.T, lakeB objstore.Bucket, tables []string) []inbox.Entry {
	t.Helper()
	var out []inbox.Entry
	for _, table := range tables {
		l, _ := inbox.NewLedger(lakeB, table)
		var ids [][2]string
		if err := l.Each(t.Context(), func(key, ver string) error { ids = append(ids, [2]string{key, ver}); return nil }); err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			e, _, found, err := l.Get(t.Context(), id[0], id[1])
			if err != nil || !found {
				t.Fatalf("entry %s: %v", id[0], err)
			}
			out = append(out, e)
		}
	}
	return out
}
