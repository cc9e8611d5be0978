package inbox_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
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
	// One line on stdout at a clean exit: what this process was refused, for
	// the scenarios that report it (a paused holder woken after its lease).
	defer func() {
		fmt.Printf("%s lost_claims=%d conflicts=%d files_committed=%d files_failed=%d splits=%d\n", workerReport,
			counterSum(reg, "sluice_inbox_lost_claims_total", "", ""),
			counterSum(reg, "sluice_ingest_flush_failures_total", "reason", "conflict"),
			counterSum(reg, "sluice_inbox_files_total", "outcome", inbox.StateCommitted),
			counterSum(reg, "sluice_inbox_files_total", "outcome", inbox.StateFailed),
			counterSum(reg, "sluice_inbox_splits_total", "", ""))
	}()
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

// workerReport starts the worker's exit line.
const workerReport = "worker-report"

// counterSum adds up the counters of one family in reg, only those whose
// label has value when label is set.
func counterSum(reg *prometheus.Registry, name, label, value string) int64 {
	families, _ := reg.Gather()
	var sum float64
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			match := label == ""
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					match = true
				}
			}
			if match {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return int64(sum)
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
	kills, arrivals := 0, 0
	for kills < 22 {
		cmd := startWorker(t, dir, split, 3*time.Second)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("worker before kill %d: %v", kills+1, err)
			}
			// It emptied the inbox before its kill came (a fast machine):
			// more files arrive, as they do in a live inbox, and the kills
			// go on over them.
			if arrivals++; arrivals > 60 {
				t.Fatalf("workers emptied the inbox %d times before 22 kills", arrivals)
			}
			files = append(files, moreFiles(t, dir, rng, arrivals)...)
			continue
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
	t.Logf("%d kills; the inbox was emptied and refilled %d times", kills, arrivals)
	verifyAll(t, dir, files, split)
}

// moreFiles drops a new batch of files into dir/inbox: JSON lines of every
// compression, one cut into several splits, CSV and Parquet.
func moreFiles(t *testing.T, dir string, rng *rand.Rand, batch int) []genFile {
	inboxB, err := objstore.NewLocal(filepath.Join(dir, "inbox"))
	if err != nil {
		t.Fatal(err)
	}
	base := 10_000 + 100*batch
	comps := []string{"none", "gzip", "zstd"}
	var files []genFile
	for i := range 12 {
		files = append(files, textFile(t, rng, "ev", base+i, 50+rng.IntN(800), 0.03, comps[i%len(comps)]))
	}
	files = append(files, textFile(t, rng, "ev", base+50, 300_000, 0.001, "none"))
	files = append(files, textFile(t, rng, "cv", base+60, 50+rng.IntN(600), 0.03, "none"))
	files = append(files, parquetFile(t, rng, base+70, 50+rng.IntN(900), 200))
	for _, f := range files {
		put(t, inboxB, f.Key, f.Data)
	}
	return files
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

// TestFaultsBatchPaused stops a batch process (SIGSTOP) while it holds
// claims, lets another process take its files over once the leases run
// out, then wakes it (SIGCONT) and lets it go on: mid-way through the
// takeover, and after the successor finished everything. The woken holder
// must be refused wherever it tries to go on (lease renewal, split and file
// updates in the ledger, links on the chains), and the committed set must
// still equal the files' rows.
func TestFaultsBatchPaused(t *testing.T) {
	faultsOnly(t)
	const lease = 3 * time.Second // the shortest Config allows
	for _, wake := range []string{"during the takeover", "after the successor finished"} {
		t.Run(wake, func(t *testing.T) {
			dir := t.TempDir()
			const split = 1 << 20
			files := bigInbox(t, dir, 40_000)
			lakeB, _ := objstore.NewLocal(filepath.Join(dir, "lake"))
			tables := []string{"ev", "cv", "pq"}

			paused := startReportingWorker(t, dir, split, lease)
			held, holder, insideLock := pauseHolding(t, paused, lakeB, tables)
			stoppedAt := time.Now()

			successor := startReportingWorker(t, dir, split, lease)
			switch wake {
			case "during the takeover":
				waitTakenOver(t, lakeB, held, holder)
			default:
				select {
				case <-successor.done:
				case <-time.After(60 * time.Second):
					t.Fatalf("the successor did not finish within 60s while the paused process slept; ledger entries still open: %v", claimedEntries(t, lakeB, tables))
				}
				if err := successor.wait(); err != nil {
					t.Fatalf("successor: %v\n%s", err, successor.stderr.String())
				}
			}
			stoppedFor := time.Since(stoppedAt)
			if err := paused.cmd.Process.Signal(syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
			if err := paused.wait(); err != nil {
				t.Fatalf("woken process: %v\n%s", err, paused.stderr.String())
			}
			if err := successor.wait(); err != nil {
				t.Fatalf("successor: %v\n%s", err, successor.stderr.String())
			}
			verifyAll(t, dir, files, split)

			takenOver := 0
			for _, e := range held {
				l, _ := inbox.NewLedger(lakeB, e.Table)
				now, _, _, err := l.Get(t.Context(), e.Key, e.Version)
				if err != nil {
					t.Fatal(err)
				}
				if now.Holder != holder && now.Epoch > e.Epoch {
					takenOver++
				}
			}
			if takenOver == 0 || wake != "during the takeover" && takenOver != len(held) {
				t.Errorf("%d of the %d files the paused process held were taken over", takenOver, len(held))
			}
			report := paused.report(t)
			refusedLines := paused.linesWith(inbox.ErrLostClaim.Error(), "claim lost")
			if report["files_failed"] != 0 {
				// Nothing in this inbox fails: a failure here is a lost claim
				// taken for a failed attempt.
				t.Errorf("the woken process counted %d failed files: %v", report["files_failed"], report)
			}
			if report["lost_claims"]+report["conflicts"] == 0 && len(refusedLines) == 0 {
				t.Errorf("the woken process was never refused: %v\n%s", report, paused.stderr.String())
			}
			t.Logf("paused %v holding %d files (lease %v; %d stops inside the store's lock let go), %d taken over; woken %s: lost claims %d, conflicting flushes %d, files committed %d, failed %d, splits %d; %d log lines refusing it",
				stoppedFor.Round(100*time.Millisecond), len(held), lease, insideLock, takenOver, wake,
				report["lost_claims"], report["conflicts"], report["files_committed"], report["files_failed"], report["splits"], len(refusedLines))
			for i, l := range refusedLines {
				if i == 3 {
					t.Logf("  ... %d more", len(refusedLines)-i)
					break
				}
				t.Logf("  %s", l)
			}
		})
	}
}

// heldFile is a ledger entry the paused process held, with its table.
type heldFile struct {
	inbox.Entry
	Table string
}

// reportingWorker is a batch process whose output is kept: its exit line
// (the counters) and its log.
type reportingWorker struct {
	cmd    *exec.Cmd
	stdout bytes.Buffer
	stderr bytes.Buffer
	err    error
	done   chan struct{}
}

func startReportingWorker(t *testing.T, dir string, split int64, lease time.Duration) *reportingWorker {
	t.Helper()
	w := &reportingWorker{done: make(chan struct{})}
	w.cmd = testkit.TestBinaryCmd(context.Background(), envWorker+"="+dir, envWorkerSplit+"="+strconv.FormatInt(split, 10), envWorkerLease+"="+lease.String())
	w.cmd.Stdout, w.cmd.Stderr = &w.stdout, &w.stderr
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { w.err = w.cmd.Wait(); close(w.done) }()
	t.Cleanup(func() {
		select {
		case <-w.done:
		default:
			_ = w.cmd.Process.Kill() // a failed scenario: a stopped process dies too
			<-w.done
		}
	})
	return w
}

func (w *reportingWorker) wait() error {
	<-w.done
	return w.err
}

// report parses the worker's exit line into its counters.
func (w *reportingWorker) report(t *testing.T) map[string]int64 {
	t.Helper()
	for line := range strings.Lines(w.stdout.String()) {
		fields := strings.Fields(line)
		if len(fields) == 0 || fields[0] != workerReport {
			continue
		}
		out := map[string]int64{}
		for _, f := range fields[1:] {
			k, v, _ := strings.Cut(f, "=")
			out[k], _ = strconv.ParseInt(v, 10, 64)
		}
		return out
	}
	t.Fatalf("no %s line in the worker's output:\n%s", workerReport, w.stdout.String())
	return nil
}

// linesWith returns the log lines containing any of subs.
func (w *reportingWorker) linesWith(subs ...string) []string {
	var out []string
	for line := range strings.Lines(w.stderr.String()) {
		for _, s := range subs {
			if strings.Contains(line, s) {
				out = append(out, strings.TrimSpace(line))
				break
			}
		}
	}
	return out
}

// pauseHolding stops w (SIGSTOP) at a moment it holds claims, a little
// after its first, so that it is in the middle of mapping; it returns the
// entries it held, its holder id and how many times it was stopped inside
// the store's lock and let go again. Only w runs: every claim is its own.
func pauseHolding(t *testing.T, w *reportingWorker, lakeB objstore.Bucket, tables []string) ([]heldFile, string, int) {
	t.Helper()
	insideLock := 0
	rng := rand.New(rand.NewPCG(13, 17))
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-w.done:
			t.Fatalf("the worker exited (%v) before it could be paused holding a claim\n%s", w.err, w.stderr.String())
		default:
		}
		if len(claimedEntries(t, lakeB, tables)) == 0 {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		time.Sleep(time.Duration(100+rng.IntN(400)) * time.Millisecond)
		if err := w.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatalf("stop the worker: %v", err)
		}
		// kill(2) returns before every thread has stopped: a thread still
		// running could finish a file after the ledger was read, and the
		// file would count as held though it was never left to a successor.
		waitStopped(t, w.cmd.Process.Pid)
		held := claimedEntries(t, lakeB, tables)
		if len(held) > 0 && !holdsFileLock(t, w.cmd.Process.Pid) {
			return held, held[0].Holder, insideLock
		}
		if len(held) > 0 {
			insideLock++
		}
		// Stopped between two passes, or inside the local store's
		// compare-and-replace (see holdsFileLock): let it go on and stop it
		// again a little later.
		_ = w.cmd.Process.Signal(syscall.SIGCONT)
		time.Sleep(time.Duration(20+rng.IntN(80)) * time.Millisecond)
	}
	t.Fatalf("the worker held no claim within 30s (%d times stopped inside the store's lock)", insideLock)
	return nil, "", 0
}

// waitStopped waits (up to 5 s) until every thread of process pid is in
// the stopped state.
func waitStopped(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
		if err != nil || len(tasks) == 0 {
			t.Skipf("the scenario needs /proc to see a process stopped: %v", err)
		}
		stopped := true
		for _, f := range tasks {
			data, err := os.ReadFile(f)
			// The state follows the command name in parentheses.
			i := strings.LastIndexByte(string(data), ')')
			if err != nil || i < 0 || i+2 >= len(data) || (data[i+2] != 'T' && data[i+2] != 't') {
				stopped = false
				break
			}
		}
		if stopped {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d not stopped 5s after SIGSTOP", pid)
		}
		time.Sleep(time.Millisecond)
	}
}

// holdsFileLock reports whether process pid holds a flock. The local
// store's PutIfMatch compares and renames under an flock on the object's
// file; a process stopped inside it keeps every other process's
// compare-and-replace of that key (a ledger entry, the cursor) waiting
// until it wakes, so a successor cannot take its files over however long
// the lease ran out. That is the local store's limit (an object store's
// conditional PUT is one request), not the lease's: the scenario stops
// the process outside the lock.
func holdsFileLock(t *testing.T, pid int) bool {
	t.Helper()
	data, err := os.ReadFile("/proc/locks")
	if err != nil {
		t.Skipf("the scenario needs /proc/locks to stop a process outside the store's lock: %v", err)
	}
	for line := range strings.Lines(string(data)) {
		f := strings.Fields(line)
		// "1: FLOCK  ADVISORY  WRITE 12345 08:01:1234 0 EOF"
		if len(f) >= 5 && f[1] == "FLOCK" && f[4] == strconv.Itoa(pid) {
			return true
		}
	}
	return false
}

func claimedEntries(t *testing.T, lakeB objstore.Bucket, tables []string) []heldFile {
	t.Helper()
	var out []heldFile
	for _, table := range tables {
		for _, e := range ledgerEntries(t, lakeB, []string{table}) {
			if e.State == inbox.StateClaimed {
				out = append(out, heldFile{Entry: e, Table: table})
			}
		}
	}
	return out
}

// waitTakenOver returns once another process claimed one of the held files.
func waitTakenOver(t *testing.T, lakeB objstore.Bucket, held []heldFile, holder string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, h := range held {
			l, _ := inbox.NewLedger(lakeB, h.Table)
			e, _, _, err := l.Get(t.Context(), h.Key, h.Version)
			if err != nil {
				t.Fatal(err)
			}
			if e.Holder != holder {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no file of the paused process was taken over within 30s")
}
