package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/aggregate"
	"github.com/sluicehq/sluice/ingest"
	"github.com/sluicehq/sluice/schema"
	"github.com/sluicehq/sluice/sink"
)

// faultAggregatorFencing: two `sluice aggregate` processes whose clocks
// disagree (SLUICE_TEST_CLOCK_OFFSET) share the stores. Late data arrives
// several times; each time the process holding the lease is SIGSTOPped mid
// run for two leases, so the other takes over and rewrites the summaries,
// and then SIGCONTed with its stale work in flight. In the end every summary
// must equal an exact recomputation from the committed raw data.
func faultAggregatorFencing(t *testing.T, bin string, table *faultTable) {
	const events, stops, lateRows = 60_000, 3, 3_000
	const lease = 4 * time.Second // aggregateFixture.config
	dir := t.TempDir()
	seed := crashSeed(t)
	rng := rand.New(rand.NewPCG(uint64(seed), uint64(seed)>>1|1))
	fx := newAggregateFixture(t, dir, events, seed)
	sumDir := filepath.Join(dir, "summaries")
	cfg := fx.config(t, "fenced", sumDir)
	raw, err := sink.NewLocal(fx.lake)
	if err != nil {
		t.Fatal(err)
	}
	cs := newChildren(t, dir)

	skew := map[string]string{"aggregate-ahead": "400ms", "aggregate-behind": "-400ms"}
	byPID := map[int]*child{}
	for _, name := range []string{"aggregate-ahead", "aggregate-behind"} {
		t.Setenv(envTestClockOffset, skew[name])
		c, _, err := cs.start(name, bin, false, "aggregate", "--config", cfg)
		if err != nil {
			t.Fatal(err)
		}
		byPID[c.cmd.Process.Pid] = c
	}
	os.Unsetenv(envTestClockOffset)
	waitExact(t, raw, fx.table, sumDir, 2*time.Minute)

	var stopped []string
	midWrite := 0
	for i := range stops {
		appendLate(t, raw, fx.table, lateRows, rng)
		// Stall the holder with a summary write in flight (its temporary
		// file is there, not yet renamed) when we catch one, else mid-run.
		inFlight := waitSummaryWrite(sumDir, 30*time.Second)
		holder := waitLeaseHolder(t, sumDir, byPID, 30*time.Second)
		if err := holder.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		if inFlight {
			midWrite++
		}
		time.Sleep(2*lease + time.Second)
		if err := holder.cmd.Process.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		stopped = append(stopped, holder.name)
		t.Logf("round %d: %d late rows; %s stopped for %s while holding the lease", i+1, lateRows, holder.name, 2*lease+time.Second)
	}
	waitExact(t, raw, fx.table, sumDir, 2*time.Minute)
	for _, c := range byPID {
		if code, err := c.stop(syscall.SIGTERM, 30*time.Second); err != nil || code != 0 {
			t.Fatalf("%s: exit %d, %v", c.name, code, err)
		}
	}

	wrong, total, problems := wrongSummaries(t, raw, fx.table, sumDir)
	fenced := 0
	for _, c := range byPID {
		data, _ := os.ReadFile(c.logPath)
		fenced += bytes.Count(data, []byte("fenced"))
	}
	row := faultRow{scenario: "2 aggregators, skewed clocks, SIGSTOP", events: events + stops*lateRows,
		faults: fmt.Sprintf("clocks %s/%s; %d late batches, lease holder SIGSTOPped %s each (%s; %d mid-write); %d fenced",
			skew["aggregate-ahead"], skew["aggregate-behind"], stops, 2*lease+time.Second, strings.Join(stopped, ", "), midWrite, fenced),
		wrong: fmt.Sprintf("%d of %d", wrong, total), peakRSS: peakRSS(cs, "aggregate-"), verdict: "ok"}
	if wrong > 0 || total == 0 {
		row.verdict = "FAILED"
	}
	table.add(row)
	if wrong > 0 || total == 0 {
		t.Fatalf("%d of %d summary objects wrong after skewed clocks and stalls:\n%s", wrong, total, strings.Join(problems, "\n"))
	}
	t.Logf("%d summary objects exact after %d stalls of the lease holder with skewed clocks (%d mid-write; %d fenced)", total, stops, midWrite, fenced)
}

// appendLate commits n events to partition 0 with event times in the last
// hour of its data, inside the late horizon: they change closed windows,
// which the aggregators must recompute.
func appendLate(t *testing.T, raw sink.Bucket, tbl *schema.Table, n int, rng *rand.Rand) {
	t.Helper()
	ctx := context.Background()
	const source, part = "kafka:events", "0"
	next, _, err := sink.NewCommitLog(raw).Resume(ctx, tbl.Name, source, part)
	if err != nil {
		t.Fatal(err)
	}
	live, err := sink.NewCommitLog(raw).LiveObjects(ctx, tbl.Name)
	if err != nil {
		t.Fatal(err)
	}
	var newest int64
	for _, o := range live {
		newest = max(newest, o.MaxEventTimeMicros)
	}
	to := time.UnixMicro(newest).Add(-5 * time.Minute)
	from := to.Add(-40 * time.Minute)
	w, err := ingest.NewWriter(ingest.WriterConfig{}, raw, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	p := w.NewPartition(tbl, source, part, next)
	for i := range n {
		ts := from.Add(time.Duration(rng.Int64N(int64(to.Sub(from)))))
		v := fmt.Appendf(nil, `{"ts":%q,"event_id":"late-%d-%d","user_id":"u%d","event_type":"click","country":"DE","device":"mobile","amount":%.2f,"latency_ms":%d,"ok":true}`,
			ts.UTC().Format(time.RFC3339Nano), next, i, rng.IntN(300), rng.Float64()*100, rng.IntN(2000))
		p.Append(v, next+int64(i), time.Now())
	}
	done := make(chan ingest.FlushResult, 1)
	if err := p.Flush(ctx, func(r ingest.FlushResult) { done <- r }); err != nil {
		t.Fatal(err)
	}
	r := <-done
	p.Settled(r)
	if r.Err != nil {
		t.Fatal(r.Err)
	}
}

// waitSummaryWrite reports whether a summary write was caught in flight
// (the local store's temporary file next to its key) before the timeout.
func waitSummaryWrite(sumDir string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		found := false
		_ = filepath.WalkDir(sumDir, func(path string, d fs.DirEntry, err error) error {
			switch {
			case err != nil:
				return nil
			case d.IsDir() && d.Name() == "_sluice":
				return filepath.SkipDir
			case !d.IsDir() && strings.HasPrefix(d.Name(), ".sluice-tmp-"):
				found = true
				return filepath.SkipAll
			}
			return nil
		})
		if found {
			return true
		}
		time.Sleep(time.Millisecond)
	}
	return false
}

var lockObjectName = regexp.MustCompile(`^[0-9]{20}\.json$`)

// waitLeaseHolder returns the process whose lease object on the table's
// aggregation job is in the store: the one running a pass now.
func waitLeaseHolder(t *testing.T, sumDir string, byPID map[int]*child, timeout time.Duration) *child {
	t.Helper()
	dir := filepath.Join(sumDir, filepath.FromSlash(aggregate.LockPrefix), "aggregate-events")
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if !lockObjectName.MatchString(e.Name()) {
				continue
			}
			data, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				continue
			}
			var lock struct{ Owner string }
			if json.Unmarshal(data, &lock) != nil {
				continue
			}
			pid, _ := strconv.Atoi(lock.Owner[strings.LastIndex(lock.Owner, "/")+1:])
			if c, ok := byPID[pid]; ok && c.alive() {
				return c
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("no aggregator took the lease within %s", timeout)
	return nil
}

// waitExact waits until every summary object is exact against the raw data
// (the aggregators have caught up), or the timeout passes.
func waitExact(t *testing.T, raw sink.Bucket, tbl *schema.Table, sumDir string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		wrong, total, _ := wrongSummaries(t, raw, tbl, sumDir)
		if wrong == 0 && total > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Logf("summaries not caught up within %s: %d of %d wrong", timeout, wrong, total)
			return
		}
		time.Sleep(time.Second)
	}
}

// wrongSummaries checks every summary object under sumDir against an exact
// recomputation from the committed raw objects.
func wrongSummaries(t *testing.T, raw sink.Bucket, tbl *schema.Table, sumDir string) (wrong, total int, problems []string) {
	t.Helper()
	ctx := context.Background()
	live, err := sink.NewCommitLog(raw).LiveObjects(ctx, tbl.Name)
	if err != nil {
		t.Fatal(err)
	}
	objects := make([][]byte, 0, len(live))
	for _, o := range live {
		rc, err := raw.Get(ctx, o.Key)
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		objects = append(objects, data)
	}
	for key, data := range summaryFiles(t, sumDir) {
		total++
		sum, err := aggregate.ReadSummary(bytes.NewReader(data), int64(len(data)), tbl)
		if err != nil {
			wrong++
			problems = append(problems, fmt.Sprintf("%s: %v", key, err))
			continue
		}
		starts := sum.Windows()
		if len(starts) == 0 {
			continue
		}
		from, to := time.UnixMicro(starts[0]), time.UnixMicro(starts[len(starts)-1]).Add(sum.Window)
		ex, err := aggregate.ExactRecompute(tbl, sum.Window, from, to, objects...)
		if err != nil {
			t.Fatal(err)
		}
		if err := ex.Check(tbl, sum); err != nil {
			wrong++
			problems = append(problems, fmt.Sprintf("%s: %v", key, err))
		}
	}
	return wrong, total, problems
}

// Two aggregators with skewed clocks, the lease holder stalled and resumed
// with late data in between: summaries stay exact (also in make faults).
func TestAggregatorsSkewedClocksAndStalls(t *testing.T) {
	faultAggregatorFencing(t, crashBinary(t), &faultTable{})
}
