package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/loadtest/gen"
	"github.com/sluicehq/sluice/loadtest/verify"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/objstore/objstoretest"
)

// The crash tests prove the exactly-once claim on real processes:
// records are produced to a `sluice broker` process while `sluice ingest`
// processes are killed with SIGKILL and restarted, then every committed
// object is read back and the set of (partition, offset) in it must equal
// the set the broker acknowledged: none lost, none twice.
//
// SLUICE_CRASH_SEED=<n> repeats a run's kill schedule; SLUICE_LONG=1 runs
// longer with more kills.

const (
	crashTopic      = "events"
	crashTable      = "events"
	crashSource     = "kafka:events"
	crashPartitions = 8
)

// crashParams size a run.
type crashParams struct {
	kills      int     // SIGKILLs of the ingester while records flow
	minRecords int64   // produced and acknowledged, good and bad
	rate       float64 // good events per second
	badShare   float64 // malformed records per good one
}

func defaultCrashParams() crashParams {
	p := crashParams{kills: 8, minRecords: 200_000, rate: 20_000, badShare: 0.005}
	if os.Getenv("SLUICE_LONG") != "" {
		p = crashParams{kills: 25, minRecords: 1_000_000, rate: 20_000, badShare: 0.005}
	}
	return p
}

func crashSeed(t *testing.T) int64 {
	seed := time.Now().UnixNano()
	if s := os.Getenv("SLUICE_CRASH_SEED"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("SLUICE_CRASH_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("seed %d (repeat with SLUICE_CRASH_SEED=%d)", seed, seed)
	return seed
}

// crashStore is where a run's ingesters write: the sluice.yaml store
// section and the same bucket opened in the test.
type crashStore struct {
	yaml   string
	bucket objstore.Bucket
}

func localCrashStore(t *testing.T, dir string) crashStore {
	lakeDir := filepath.Join(dir, "lake")
	b, err := objstore.NewLocal(lakeDir)
	if err != nil {
		t.Fatal(err)
	}
	return crashStore{yaml: fmt.Sprintf("  local_dir: %q\n", lakeDir), bucket: b}
}

// s3CrashStore uses a fresh bucket on the test S3 server (see objstoretest:
// skipped when none is configured, a failure under CI). The credentials
// stay in the environment the children inherit, not in the file.
func s3CrashStore(t *testing.T) crashStore {
	cfg := objstoretest.S3Config(t)
	b := objstoretest.OpenS3(t, cfg, slog.New(slog.DiscardHandler))
	y := fmt.Sprintf(`  s3:
    endpoint: %q
    region: %q
    bucket: %q
    access_key: ${%s}
    secret_key: ${%s}
    insecure: true
    path_style: true
    create_bucket: true
`, cfg.Endpoint, cfg.Region, cfg.Bucket, objstoretest.EnvS3AccessKey, objstoretest.EnvS3SecretKey)
	return crashStore{yaml: y, bucket: b}
}

// crashRig is one broker process, a sluice.yaml for ingesters, and the
// bucket they write to.
type crashRig struct {
	t          *testing.T
	bin, dir   string
	procs      *testkit.Procs
	broker     *testkit.Proc
	brokerAddr string
	brokerArgs []string
	brokerRuns int
	config     string
	store      crashStore
	commits    *lake.CommitLog
	ingesters  int
}

func newCrashRig(t *testing.T, bin, dir string, store crashStore, brokerArgs ...string) *crashRig {
	r := &crashRig{t: t, bin: bin, dir: dir, procs: testkit.NewProcs(t, dir), store: store,
		commits: lake.NewCommitLog(store.bucket), brokerArgs: brokerArgs}
	r.startBroker("127.0.0.1:0")
	// The dead member of a killed ingester leaves the group when the
	// rebalance that the next ingester's join starts times out
	// (rebalance_timeout) or its session expires, whichever is first.
	// Short timeouts keep restarts quick; the ingester's revoke handling
	// only flushes small buffers.
	cfg := fmt.Sprintf(`kafka:
  brokers: [%q]
  group: sluice-crash
  session_timeout: 6s
  rebalance_timeout: 1s
store:
%singest:
  flush_records: 5000
  flush_interval: 500ms
  flush_timeout: 30s
http:
  addr: 127.0.0.1:0
`, r.brokerAddr, store.yaml)
	r.config = filepath.Join(dir, "sluice.yaml")
	if err := os.WriteFile(r.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return r
}

// startBroker starts the broker on addr (port 0 the first time; the same
// address after a kill, so clients find it again).
func (r *crashRig) startBroker(addr string) {
	r.t.Helper()
	r.brokerRuns++
	args := append([]string{"broker", "--addr", addr, "--data-dir", filepath.Join(r.dir, "kafka"),
		"--topic", fmt.Sprintf("%s:%d", crashTopic, crashPartitions), "--log-level", "warn"}, r.brokerArgs...)
	c, printed, err := r.procs.Start(fmt.Sprintf("broker-%d", r.brokerRuns), r.bin, true, args...)
	if err != nil {
		r.t.Fatal(err)
	}
	r.broker, r.brokerAddr = c, printed
}

func (r *crashRig) startIngester() *testkit.Proc {
	r.t.Helper()
	return startIngester(r.t, r.procs, r.bin, r.config, &r.ingesters)
}

// startIngester starts `sluice ingest --config config` as ingester *n+1
// of procs (its log is ingest-NN.log) and counts it in *n.
func startIngester(t *testing.T, procs *testkit.Procs, bin, config string, n *int) *testkit.Proc {
	t.Helper()
	*n++
	c, _, err := procs.Start(fmt.Sprintf("ingest-%02d", *n), bin, false, "ingest", "--config", config, "--log-level", "info")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// progress returns the chain end of every partition and how many records
// (rows plus dead letters) the chains hold.
func (r *crashRig) progress(ctx context.Context) (map[string]int64, int64, error) {
	chains, err := r.commits.Chains(ctx, crashTable)
	if err != nil {
		return nil, 0, err
	}
	ends := map[string]int64{}
	var n int64
	for _, c := range chains {
		if end, ok := c.End(); ok && c.Source == crashSource {
			ends[c.Partition], _ = end.Next.Int64()
		}
		for _, rec := range c.Records {
			n += rec.Records + rec.DeadLetters
		}
	}
	return ends, n, nil
}

// waitCommitted waits until every partition's chain reaches want.
func (r *crashRig) waitCommitted(want map[string]int64, timeout time.Duration) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		ends, _, err := r.progress(ctx)
		behind := []string{}
		if err == nil {
			for p, w := range want {
				if ends[p] < w {
					behind = append(behind, fmt.Sprintf("%s at %d of %d", p, ends[p], w))
				}
			}
			if len(behind) == 0 {
				return
			}
		}
		select {
		case <-ctx.Done():
			r.t.Fatalf("after %s the commit log is behind the produced records: %v (last error %v)", timeout, behind, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// committedCount is how many records the chains hold now.
func (r *crashRig) committedCount() int64 {
	r.t.Helper()
	_, n, err := r.progress(context.Background())
	if err != nil {
		r.t.Fatal(err)
	}
	return n
}

// waitCommitting waits until the commit log grows past from, the count when
// the running ingester started: it owns partitions and is flushing.
func (r *crashRig) waitCommitting(from int64, timeout time.Duration) {
	r.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		_, n, err := r.progress(context.Background())
		if err == nil && n > from {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.t.Fatalf("no commit within %s of starting ingester %d", timeout, r.ingesters)
}

// stopIngesterGracefully sends SIGTERM and requires exit code 0: the last
// instance flushes and commits what it holds.
func (r *crashRig) stopIngesterGracefully(c *testkit.Proc) {
	r.t.Helper()
	code, err := c.Stop(syscall.SIGTERM, 60*time.Second)
	if err != nil {
		r.t.Fatal(err)
	}
	if code != 0 {
		r.t.Fatalf("%s exited with code %d after SIGTERM, want 0", c.Name, code)
	}
}

func killChild(t *testing.T, c *testkit.Proc) {
	t.Helper()
	code, err := c.Stop(syscall.SIGKILL, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if code != -1 {
		t.Fatalf("%s exited with code %d before SIGKILL landed; it must have been running", c.Name, code)
	}
}

// malformedRecords are rejected by the events table for different reasons;
// one is not UTF-8 and one is over max_record_bytes.
var malformedRecords = [][]byte{
	[]byte(`{"ts":`),
	[]byte(`[1,2,3]`),
	[]byte(`{"ts":"2026-01-01T00:00:00Z","event_id":"x","user_id":"u","event_type":"e","amount":"lots","latency_ms":1,"ok":true}`),
	[]byte(`{"event_id":"x","user_id":"u","event_type":"e","amount":1,"latency_ms":1,"ok":true}`),
	[]byte(`{"ts":"yesterday","event_id":"x","user_id":"u","event_type":"e","amount":1,"latency_ms":1,"ok":true}`),
	[]byte("\xff\xfe\x00 binary"),
	[]byte(`{"ts":"2026-01-01T00:00:00Z","pad":"` + strings.Repeat("x", 70_000) + `"}`),
}

// production is the producers of a run: generated events at a rate, and
// malformed records in between; every acknowledgement goes into exp.
type production struct {
	exp      *verify.Expected
	cl       *kgo.Client
	p        *gen.Producer
	cancel   context.CancelFunc
	done     chan error
	badWG    sync.WaitGroup
	badAcked atomic.Int64
	badErr   atomic.Pointer[error]
	started  time.Time
	elapsed  time.Duration
}

func startProduction(t *testing.T, addr string, seed int64, params crashParams) *production {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	// Event time crosses an hour a minute into the run, and one event in a
	// hundred is up to 90 minutes late, so flushes write several objects.
	start := time.Now().UTC().Add(-2 * time.Hour).Truncate(time.Hour).Add(-time.Minute)
	g, err := gen.New(gen.Config{Seed: seed, Start: start, EventsPerSecond: 1000, LateShare: 0.01, LateBy: 90 * time.Minute, NullShare: 0.02})
	if err != nil {
		t.Fatal(err)
	}
	pr := &production{exp: verify.NewExpected(), cl: cl, done: make(chan error, 1), started: time.Now()}
	pr.p, err = gen.NewProducer(cl, g, gen.ProducerConfig{Topic: crashTopic, Rate: params.rate,
		DrainTimeout: 30 * time.Second,
		OnAck: func(r *kgo.Record, err error) {
			if err == nil {
				pr.exp.AddGood(strconv.Itoa(int(r.Partition)), r.Offset)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	pr.cancel = cancel
	go func() {
		_, err := pr.p.Run(ctx)
		pr.done <- err
	}()
	pr.badWG.Add(1)
	go func() {
		defer pr.badWG.Done()
		every := time.Duration(float64(time.Second) / (params.rate * params.badShare))
		tick := time.NewTicker(every)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			pr.badWG.Add(1)
			rec := &kgo.Record{Topic: crashTopic, Key: fmt.Appendf(nil, "bad-%d", i), Value: malformedRecords[i%len(malformedRecords)]}
			cl.Produce(context.WithoutCancel(ctx), rec, func(r *kgo.Record, err error) {
				defer pr.badWG.Done()
				if err != nil {
					pr.badErr.CompareAndSwap(nil, &err)
					return
				}
				pr.exp.AddBad(strconv.Itoa(int(r.Partition)), r.Offset)
				pr.badAcked.Add(1)
			})
		}
	}()
	return pr
}

// acked is how many records were acknowledged so far.
func (pr *production) acked() int64 { return pr.p.Stats().Acked + pr.badAcked.Load() }

// failed reports a producer error so far.
func (pr *production) failed() error {
	if e := pr.badErr.Load(); e != nil {
		return fmt.Errorf("malformed record: %w", *e)
	}
	select {
	case err := <-pr.done:
		pr.done <- err
		if err != nil {
			return err
		}
		return errors.New("producer stopped early")
	default:
		return nil
	}
}

// stop ends production and waits for every acknowledgement.
func (pr *production) stop(t *testing.T) {
	t.Helper()
	pr.cancel()
	if err := <-pr.done; err != nil {
		t.Fatalf("producer: %v", err)
	}
	pr.badWG.Wait()
	if e := pr.badErr.Load(); e != nil {
		t.Fatalf("malformed record not acknowledged: %v", *e)
	}
	pr.elapsed = time.Since(pr.started)
	good, bad := pr.exp.Counts()
	if st := pr.p.Stats(); good != st.Acked || bad != pr.badAcked.Load() {
		t.Fatalf("acknowledgements recorded %d good, %d bad; producers counted %d, %d", good, bad, st.Acked, pr.badAcked.Load())
	}
}

// verifyCommitted reads every committed object back and fails the test
// unless the committed positions are exactly the acknowledged ones.
func verifyCommitted(t *testing.T, b objstore.Bucket, exp *verify.Expected) verify.Report {
	t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var rep verify.Report
	var readErr error
	peak := testkit.PeakHeap(func() {
		var got *verify.Committed
		got, readErr = verify.ReadCommitted(ctx, b, crashTable, verify.Options{Source: crashSource, EventIDColumn: "event_id"})
		if readErr == nil {
			rep = verify.Compare(exp, got)
		}
	})
	if readErr != nil {
		t.Fatalf("read committed data: %v", readErr)
	}
	t.Logf("verified in %s, peak heap of the test process %.0f MB:\n%s", time.Since(start).Round(time.Millisecond), float64(peak)/1e6, rep)
	if !rep.OK() {
		t.Fatalf("exactly-once violated:\n%s", rep)
	}
	if rep.DuplicateEventIDs != 0 {
		t.Fatalf("%d committed rows repeat an event id", rep.DuplicateEventIDs)
	}
	good, bad := exp.Counts()
	if rep.CommittedRows != good || rep.CommittedDeadLetters != bad {
		t.Fatalf("committed %d rows and %d dead letters, produced %d good and %d bad", rep.CommittedRows, rep.CommittedDeadLetters, good, bad)
	}
	return rep
}

// TestCrash builds the binary once for all its runs:
//
//	ingester/local, ingester/s3: the ingester is killed -9 and restarted
//	    at least 5 times while records flow (see defaultCrashParams);
//	broker: the broker process is killed -9 and restarted once while the
//	    ingester keeps running.
func TestCrash(t *testing.T) {
	bin := testkit.SluiceBinary(t)
	t.Run("ingester", func(t *testing.T) {
		stores := []struct {
			name   string
			open   func(t *testing.T, dir string) crashStore
			adjust func(*crashParams)
		}{
			{name: "local", open: localCrashStore},
			// Each restart costs more against a real S3 server; fewer kills
			// keep the default run short (SLUICE_LONG runs the full count).
			{name: "s3", open: func(t *testing.T, _ string) crashStore { return s3CrashStore(t) },
				adjust: func(p *crashParams) {
					if os.Getenv("SLUICE_LONG") == "" {
						p.kills = 6
					}
				}},
		}
		for _, st := range stores {
			t.Run(st.name, func(t *testing.T) {
				params := defaultCrashParams()
				if st.adjust != nil {
					st.adjust(&params)
				}
				dir := t.TempDir()
				runIngesterKills(t, bin, dir, st.open(t, dir), params)
			})
		}
	})
	t.Run("broker", func(t *testing.T) { runBrokerKill(t, bin) })
}

func runIngesterKills(t *testing.T, bin, dir string, store crashStore, params crashParams) {
	seed := crashSeed(t)
	rng := rand.New(rand.NewPCG(uint64(seed), uint64(seed)>>1|1))
	runStart := time.Now()
	rig := newCrashRig(t, bin, dir, store)
	ing := rig.startIngester()
	prod := startProduction(t, rig.brokerAddr, seed, params)

	// Each instance is killed a random time after it starts committing, so
	// kills land while it uploads objects, between its objects and their
	// commit record, and while it is idle between flushes.
	var delays []string
	var committed int64 // by the dead instances
	// A kill lands while records flow when the broker acknowledged records
	// since the previous kill and some acknowledged records were not yet
	// committed when the instance died: its successor must recover them.
	var inFlight []int64
	var ackedAtKill int64
	flowing := 0
	for kill := 1; kill <= params.kills; kill++ {
		rig.waitCommitting(committed, 60*time.Second)
		if err := prod.failed(); err != nil {
			t.Fatalf("producer: %v", err)
		}
		d := 300*time.Millisecond + time.Duration(rng.Int64N(int64(2200*time.Millisecond)))
		time.Sleep(d)
		acked := prod.acked()
		killChild(t, ing)
		delays = append(delays, d.Round(time.Millisecond).String())
		committed = rig.committedCount() // the dead instance commits no more
		inFlight = append(inFlight, acked-committed)
		if acked > ackedAtKill && acked > committed {
			flowing++
		}
		ackedAtKill = acked
		ing = rig.startIngester()
	}
	killsDone := time.Since(runStart)

	// Keep producing until the run holds enough records; the kills all
	// happened while records were flowing.
	for prod.acked() < params.minRecords {
		if err := prod.failed(); err != nil {
			t.Fatalf("producer: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	prod.stop(t)
	good, bad := prod.exp.Counts()
	ends := prod.exp.Ends()

	drainStart := time.Now()
	rig.waitCommitted(ends, 2*time.Minute)
	drained := time.Since(drainStart)
	rig.stopIngesterGracefully(ing)

	orphans := sweepStopped(t, store.bucket)
	rep := verifyCommitted(t, store.bucket, prod.exp)

	// Neither follows from the loops above: the kill loop counts kills,
	// not whether records flowed; the production loop counts records, not
	// whether any came after the last kill.
	if flowing < 5 {
		t.Fatalf("only %d of %d kills landed while records flowed (acknowledged, not yet committed at each kill: %v), want at least 5",
			flowing, len(delays), inFlight)
	}
	if after := good + bad - ackedAtKill; after <= 0 {
		t.Fatalf("no record was acknowledged after the last kill (%d in all): the last instance only drained a backlog", good+bad)
	}
	if len(ends) != crashPartitions {
		t.Fatalf("records reached %d partitions, want %d", len(ends), crashPartitions)
	}
	t.Logf("%d kills (each %v after the instance's first commit; records in flight %v) in the first %s; %d good + %d malformed records over %d partitions "+
		"produced in %s (%.0f/s); the last instance caught up %s after production stopped; %d commit records; "+
		"%d orphan objects from interrupted flushes (invisible to readers, then swept); whole run %s",
		len(delays), delays, inFlight, killsDone.Round(time.Millisecond), good, bad, len(ends), prod.elapsed.Round(time.Millisecond),
		float64(good+bad)/prod.elapsed.Seconds(), drained.Round(time.Millisecond), rep.Records, orphans,
		time.Since(runStart).Round(time.Millisecond))
}

// sweepStopped sweeps the table once no ingester runs (nothing is in flight,
// so any grace will do) and checks that the store then holds exactly the
// live objects: a reader of every file under the table sees each committed
// row once. It returns how many uncommitted objects it deleted.
func sweepStopped(t *testing.T, b objstore.Bucket) int {
	t.Helper()
	ctx := context.Background()
	sw, err := lake.NewSweeper(lake.SweepConfig{Grace: time.Nanosecond}, b, nil, "crash-test", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := sw.Sweep(ctx, crashTable, lake.TableRetention{}, nil)
	if err != nil {
		t.Fatalf("sweep: %v", err)
	}
	log := lake.NewCommitLog(b)
	live, err := log.LiveObjects(ctx, crashTable)
	if err != nil {
		t.Fatal(err)
	}
	dead, err := log.LiveDeadLetters(ctx, crashTable)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, o := range append(live, dead...) {
		want[o.Key] = true
	}
	for _, prefix := range []string{crashTable + "/", lake.DeadLetterRoot + crashTable + "/"} {
		if err := b.Iter(ctx, prefix, func(a objstore.ObjectAttrs) error {
			if !want[a.Key] {
				t.Errorf("after the sweep %s is in the store but not committed", a.Key)
			}
			delete(want, a.Key)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	for k := range want {
		t.Errorf("the sweep deleted the committed object %s", k)
	}
	n, _ := rep.Count(lake.SweepUncommitted)
	return n
}

// runBrokerKill kills the broker process with SIGKILL once mid-run and
// restarts it on the same address and data dir; the ingester keeps running
// through it. Acknowledged records survive a kill -9 without --sync (they
// are in the page cache; see internal/kafkabroker), so none may be missing.
func runBrokerKill(t *testing.T, bin string) {
	dir := t.TempDir()
	seed := crashSeed(t)
	rng := rand.New(rand.NewPCG(uint64(seed), uint64(seed)>>1|1))
	params := crashParams{minRecords: 100_000, rate: 10_000, badShare: 0.005}
	runStart := time.Now()
	rig := newCrashRig(t, bin, dir, localCrashStore(t, dir))
	ing := rig.startIngester()
	prod := startProduction(t, rig.brokerAddr, seed, params)

	rig.waitCommitting(0, 60*time.Second)
	time.Sleep(time.Second + time.Duration(rng.Int64N(int64(2*time.Second))))
	before := prod.acked()
	killChild(t, rig.broker)
	down := time.Duration(rng.Int64N(int64(time.Second)))
	time.Sleep(down)
	rig.startBroker(rig.brokerAddr)
	restarted := time.Now()

	// Production and ingestion must both recover on their own.
	for prod.acked() < max(params.minRecords, before+20_000) {
		if err := prod.failed(); err != nil {
			t.Fatalf("producer: %v", err)
		}
		if time.Since(restarted) > 2*time.Minute {
			t.Fatalf("production did not recover after the broker restart: %d acknowledged", prod.acked())
		}
		time.Sleep(50 * time.Millisecond)
	}
	prod.stop(t)
	rig.waitCommitted(prod.exp.Ends(), 2*time.Minute)
	if !ing.Alive() {
		t.Fatal("the ingester exited while the broker was down; it must ride it out")
	}
	rig.stopIngesterGracefully(ing)
	verifyCommitted(t, rig.store.bucket, prod.exp)
	good, bad := prod.exp.Counts()
	t.Logf("broker killed after %d acknowledged records, down %s; %d good + %d malformed records in all; whole run %s",
		before, down.Round(time.Millisecond), good, bad, time.Since(runStart).Round(time.Millisecond))
}
