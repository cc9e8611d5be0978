package main

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/sluicehq/sluice/internal/faultproxy"
	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/loadtest/verify"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/objstore/objstoretest"
)

// The fault suite (make faults: SLUICE_FAULTS=1) drives the real binaries —
// a `sluice broker` process, `sluice ingest` processes, the S3 server behind
// a fault proxy — through failures while records flow, and ends every
// scenario in the load-test verifier: nothing lost, nothing duplicated,
// every record in the right area. It prints one table row per scenario:
//
//	scenario, events (good and malformed, acknowledged by the broker),
//	faults injected, lost, duplicated, peak RSS of the ingesters (the
//	largest ru_maxrss of any ingester process of the scenario).
//
// Scenarios needing the S3 server skip without SLUICE_TEST_S3_* (and fail
// under CI, like the other S3 tests).

// faultRow is one line of the suite's table.
type faultRow struct {
	scenario   string
	events     int64
	faults     string
	lost, dups int64
	wrong      string // wrong summaries, "-" where none are checked
	peakRSS    int64  // bytes
	verdict    string
}

type faultTable struct {
	mu   sync.Mutex
	rows []faultRow
}

func (ft *faultTable) add(r faultRow) {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	ft.rows = append(ft.rows, r)
}

func (ft *faultTable) String() string {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tevents\tfaults injected\tlost\tduplicated\twrong summaries\tpeak RSS\tverdict")
	for _, r := range ft.rows {
		wrong := r.wrong
		if wrong == "" {
			wrong = "-"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%s\t%.0f MiB\t%s\n", r.scenario, r.events, r.faults, r.lost, r.dups, wrong, float64(r.peakRSS)/(1<<20), r.verdict)
	}
	tw.Flush()
	return b.String()
}

// faultsParams size the scenarios; SLUICE_FAULTS_RATE overrides the rate.
type faultsParams struct {
	rate   float64       // good events per second
	outage time.Duration // S3 down
	slow   time.Duration // S3 slow
	delay  time.Duration // per request while slow
	budget int64         // ingest memory_budget in the slow-store scenario
}

func defaultFaultsParams() faultsParams {
	return faultsParams{rate: 10_000, outage: 30 * time.Second, slow: 25 * time.Second, delay: time.Second, budget: 16 << 20}
}

func TestFaults(t *testing.T) {
	if os.Getenv("SLUICE_FAULTS") == "" {
		t.Skip("the fault suite runs with SLUICE_FAULTS=1 (make faults)")
	}
	bin := testkit.SluiceBinary(t)
	params := defaultFaultsParams()
	table := &faultTable{}
	t.Cleanup(func() {
		out := table.String()
		t.Logf("fault suite:\n%s", out)
		fmt.Print("\nfault suite\n" + out)
	})
	t.Run("s3-down-30s", func(t *testing.T) { faultS3Outage(t, bin, params, table) })
	t.Run("s3-slow", func(t *testing.T) { faultSlowStore(t, bin, params, table) })
	t.Run("broker-restart", func(t *testing.T) { faultBrokerRestart(t, bin, params, table) })
	t.Run("three-replicas-join-leave", func(t *testing.T) { faultReplicas(t, bin, params, table) })
	t.Run("aggregator-kill-and-race", func(t *testing.T) { faultAggregator(t, bin, table) })
	// The lake v2 scenarios: faults_lake_test.go.
	t.Run("zombie-ingester", func(t *testing.T) { faultZombie(t, bin, params, table) })
	t.Run("topic-recreated", func(t *testing.T) { faultTopicRecreated(t, bin, params, table) })
	t.Run("retention-gap", func(t *testing.T) { faultRetention(t, bin, params, table) })
	t.Run("latest-kill-before-commit", func(t *testing.T) { faultLatestKill(t, bin, params, table) })
	t.Run("partitions-added", func(t *testing.T) { faultPartitionsAdded(t, bin, params, table) })
	t.Run("s3-errors-backlog", func(t *testing.T) { faultS3Errors(t, bin, params, table) })
	t.Run("aggregators-skewed-clocks-sigstop", func(t *testing.T) { faultAggregatorFencing(t, bin, table) })
	t.Run("s3-without-conditional-writes", func(t *testing.T) { faultNoConditionalWrites(t, bin, table) })
}

// faultsConfig replaces the rig's sluice.yaml: short group timeouts as in the
// crash tests, small flushes, and the given memory budget.
func faultsConfig(t *testing.T, r *crashRig, storeYAML string, budget int64) {
	t.Helper()
	flushBytes := min(int64(8<<20), budget/2)
	cfg := fmt.Sprintf(`kafka:
  brokers: [%q]
  group: sluice-faults
  session_timeout: 6s
  rebalance_timeout: 1s
store:
%singest:
  flush_records: 5000
  flush_bytes: %d
  flush_interval: 500ms
  flush_timeout: 30s
  memory_budget: %d
http:
  addr: 127.0.0.1:0
`, r.brokerAddr, storeYAML, flushBytes, budget)
	if err := os.WriteFile(r.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
}

// proxiedS3Store is a fresh bucket on the test S3 server that the
// ingesters reach only through a fault proxy; the test reads it directly.
func proxiedS3Store(t *testing.T) (crashStore, *faultproxy.Proxy) {
	t.Helper()
	cfg := objstoretest.S3Config(t)
	b := objstoretest.OpenS3(t, cfg, slog.New(slog.DiscardHandler))
	p, err := faultproxy.Start("http://" + cfg.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	y := fmt.Sprintf(`  s3:
    endpoint: %q
    region: %q
    bucket: %q
    access_key: ${%s}
    secret_key: ${%s}
    insecure: true
    path_style: true
`, p.Addr(), cfg.Region, cfg.Bucket, objstoretest.EnvS3AccessKey, objstoretest.EnvS3SecretKey)
	return crashStore{yaml: y, bucket: b}, p
}

// ingesterPeakRSS is the largest peak resident set of the scenario's
// ingester processes, all of which must have exited.
func ingesterPeakRSS(t *testing.T, r *crashRig) int64 {
	t.Helper()
	return peakRSS(r.procs, "ingest-")
}

// peakRSS is the largest ru_maxrss (VmHWM at exit) of the exited children
// whose name starts with prefix.
func peakRSS(cs *testkit.Procs, prefix string) int64 {
	var peak int64
	for _, c := range cs.All() {
		if !strings.HasPrefix(c.Name, prefix) || c.State() == nil {
			continue
		}
		if ru, ok := c.State().SysUsage().(*syscall.Rusage); ok {
			peak = max(peak, ru.Maxrss*1024) // kilobytes on Linux
		}
	}
	return peak
}

// faultsVerify reads back what readers can see, adds the scenario's row and
// fails the test unless every acknowledged record is committed once.
func faultsVerify(t *testing.T, r *crashRig, prod *production, table *faultTable, scenario, faults string) faultRow {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rep, row, err := faultsCheck(ctx, r.store.bucket, prod.exp)
	if err != nil {
		t.Fatalf("read committed data: %v", err)
	}
	row.scenario, row.faults, row.peakRSS = scenario, faults, ingesterPeakRSS(t, r)
	good, bad := prod.exp.Counts()
	table.add(row)
	t.Logf("%s: %d good + %d malformed records, %s; verifier:\n%s", scenario, good, bad, faults, rep)
	if row.verdict != "ok" {
		t.Fatalf("exactly-once violated after %s:\n%s", scenario, rep)
	}
	return row
}

// faultsCheck runs the verifier over the table's committed data; the row's
// verdict is "ok" only if every expected record is committed exactly once,
// in the right area, and every object matches its commit record.
func faultsCheck(ctx context.Context, b objstore.BucketReader, exp *verify.Expected) (verify.Report, faultRow, error) {
	got, err := verify.ReadCommitted(ctx, b, crashTable, verify.Options{Source: crashSource})
	if err != nil {
		return verify.Report{}, faultRow{}, err
	}
	rep := verify.Compare(exp, got)
	good, bad := exp.Counts()
	row := faultRow{events: good + bad, lost: rep.Lost.Positions, dups: rep.Duplicated.Positions, verdict: "ok"}
	if !rep.OK() || rep.CommittedRows != good || rep.CommittedDeadLetters != bad {
		row.verdict = "FAILED"
	}
	return rep, row, nil
}

// sleepProducing waits d while checking the producer and the given
// processes every 100ms.
func sleepProducing(t *testing.T, d time.Duration, prod *production, alive ...*testkit.Proc) {
	t.Helper()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if err := prod.failed(); err != nil {
			t.Fatalf("producer: %v", err)
		}
		for _, c := range alive {
			if !c.Alive() {
				t.Fatalf("%s exited during the fault; it must ride it out", c.Name)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// faultS3Outage: the S3 server is unreachable (connections refused, open
// ones cut) for 30 s while records flow, then back.
func faultS3Outage(t *testing.T, bin string, params faultsParams, table *faultTable) {
	store, proxy := proxiedS3Store(t)
	dir := t.TempDir()
	seed := crashSeed(t)
	rig := newCrashRig(t, bin, dir, store)
	faultsConfig(t, rig, store.yaml, 64<<20)
	ing := rig.startIngester()
	prod := startProduction(t, rig.brokerAddr, seed, crashParams{rate: params.rate, badShare: 0.005})
	rig.waitCommitting(0, 60*time.Second)
	sleepProducing(t, 3*time.Second, prod, ing)

	proxy.Down()
	downAt := time.Now()
	sleepProducing(t, params.outage, prod, ing)
	if err := proxy.Up(); err != nil {
		t.Fatal(err)
	}
	backlog := prod.acked() - rig.committedCount()
	rig.waitCommitting(rig.committedCount(), 2*time.Minute)
	resumed := time.Since(downAt) - params.outage
	sleepProducing(t, 5*time.Second, prod, ing)
	prod.stop(t)
	rig.waitCommitted(prod.exp.Ends(), 3*time.Minute)
	rig.stopIngesterGracefully(ing)
	faultsVerify(t, rig, prod, table, "s3 down 30s", fmt.Sprintf("1 outage of %s (%d records behind); commits resumed %s after", params.outage, backlog, resumed.Round(100*time.Millisecond)))
}

// faultSlowStore: every S3 request waits params.delay for params.slow while
// records arrive faster than they can be committed: fetching must pause
// (backpressure) and the ingester's memory stay within bounds.
func faultSlowStore(t *testing.T, bin string, params faultsParams, table *faultTable) {
	store, proxy := proxiedS3Store(t)
	dir := t.TempDir()
	seed := crashSeed(t)
	rig := newCrashRig(t, bin, dir, store)
	faultsConfig(t, rig, store.yaml, params.budget)
	ing := rig.startIngester()
	prod := startProduction(t, rig.brokerAddr, seed, crashParams{rate: 2 * params.rate, badShare: 0.005})
	rig.waitCommitting(0, 60*time.Second)
	sleepProducing(t, 3*time.Second, prod, ing)

	proxy.SetDelay(params.delay)
	ackedBefore, committedBefore := prod.acked(), rig.committedCount()
	sleepProducing(t, params.slow, prod, ing)
	proxy.SetDelay(0)
	produced, committed := prod.acked()-ackedBefore, rig.committedCount()-committedBefore
	sleepProducing(t, 3*time.Second, prod, ing)
	prod.stop(t)
	rig.waitCommitted(prod.exp.Ends(), 3*time.Minute)
	rig.stopIngesterGracefully(ing)
	st := proxy.Stats()
	row := faultsVerify(t, rig, prod, table, "s3 slow", fmt.Sprintf("%s delay on %d requests over %s; %d produced, %d committed meanwhile",
		params.delay, st.Delayed, params.slow, produced, committed))

	// The fault must have bitten: far fewer records committed than produced
	// while the store was slow, so the backlog stayed in Kafka, not in memory.
	if committed*2 > produced {
		t.Errorf("while the store was slow %d records were committed of %d produced: the delay did not slow ingestion, the scenario proves nothing", committed, produced)
	}
	// `sluice ingest` sets the soft memory limit to three times the budget;
	// on top come the runtime, the binary, the client's connections and
	// the fetch the Kafka client holds decompressed (up to fetch_max_bytes,
	// 16 MiB, of snappy batches). Unchanged code measured 125-180 MiB
	// over ten runs of this scenario, so the former 128 MiB of room failed
	// at random. Unbounded, the backlog (about 460,000 records, over 100 MB of
	// input) would have been held decoded on top: the bound leaves room for
	// noise, not for that.
	limit := 3*params.budget + 160<<20
	if row.peakRSS > limit {
		t.Errorf("peak RSS %d MiB over %d MiB (3 x the %d MiB budget + 160 MiB): memory grew with the backlog",
			row.peakRSS>>20, limit>>20, params.budget>>20)
	}
}

// faultBrokerRestart: the broker process is stopped (SIGTERM) for 5 s and
// later killed (SIGKILL) and restarted at once, both times on the same
// address and data dir, while the ingester keeps running.
func faultBrokerRestart(t *testing.T, bin string, params faultsParams, table *faultTable) {
	dir := t.TempDir()
	seed := crashSeed(t)
	rig := newCrashRig(t, bin, dir, localCrashStore(t, dir))
	faultsConfig(t, rig, fmt.Sprintf("  local_dir: %q\n", filepath.Join(dir, "lake")), 64<<20)
	ing := rig.startIngester()
	prod := startProduction(t, rig.brokerAddr, seed, crashParams{rate: params.rate, badShare: 0.005})
	rig.waitCommitting(0, 60*time.Second)
	sleepProducing(t, 3*time.Second, prod, ing)

	for i, how := range []struct {
		sig  syscall.Signal
		down time.Duration
	}{{syscall.SIGTERM, 5 * time.Second}, {syscall.SIGKILL, 0}} {
		code, err := rig.broker.Stop(how.sig, 60*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if how.sig == syscall.SIGTERM && code != 0 {
			t.Fatalf("broker exited with %d after SIGTERM", code)
		}
		time.Sleep(how.down)
		rig.startBroker(rig.brokerAddr)
		// Production and ingestion must both recover on their own.
		acked := prod.acked()
		deadline := time.Now().Add(2 * time.Minute)
		for prod.acked() < acked+20_000 {
			if time.Now().After(deadline) {
				t.Fatalf("restart %d: production did not recover", i+1)
			}
			sleepProducing(t, 100*time.Millisecond, prod, ing)
		}
		rig.waitCommitting(rig.committedCount(), 2*time.Minute)
		sleepProducing(t, 3*time.Second, prod, ing)
	}
	prod.stop(t)
	rig.waitCommitted(prod.exp.Ends(), 3*time.Minute)
	rig.stopIngesterGracefully(ing)
	faultsVerify(t, rig, prod, table, "broker restart", "SIGTERM + 5s down, then SIGKILL + restart")
}

// faultReplicas: three ingesters in one group; members leave gracefully,
// are killed with SIGKILL, and new ones join, while records flow.
func faultReplicas(t *testing.T, bin string, params faultsParams, table *faultTable) {
	dir := t.TempDir()
	seed := crashSeed(t)
	rng := rand.New(rand.NewPCG(uint64(seed), uint64(seed)>>1|1))
	rig := newCrashRig(t, bin, dir, localCrashStore(t, dir))
	faultsConfig(t, rig, fmt.Sprintf("  local_dir: %q\n", filepath.Join(dir, "lake")), 64<<20)
	members := []*testkit.Proc{rig.startIngester(), rig.startIngester(), rig.startIngester()}
	prod := startProduction(t, rig.brokerAddr, seed, crashParams{rate: params.rate, badShare: 0.005})
	rig.waitCommitting(0, 60*time.Second)

	var changes []string
	for round := range 6 {
		sleepProducing(t, 2*time.Second+time.Duration(rng.Int64N(int64(2*time.Second))), prod, members...)
		i := rng.IntN(len(members))
		victim := members[i]
		if round%2 == 0 {
			rig.stopIngesterGracefully(victim)
			changes = append(changes, "leave")
		} else {
			killChild(t, victim)
			changes = append(changes, "kill")
		}
		members[i] = rig.startIngester()
		changes[len(changes)-1] += "+join"
	}
	sleepProducing(t, 3*time.Second, prod, members...)
	prod.stop(t)
	rig.waitCommitted(prod.exp.Ends(), 3*time.Minute)
	for _, m := range members {
		rig.stopIngesterGracefully(m)
	}
	faultsVerify(t, rig, prod, table, "3 replicas join/leave", fmt.Sprintf("%d membership changes: %s", len(changes), strings.Join(changes, ", ")))
}
