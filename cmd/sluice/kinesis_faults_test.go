package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskinesis "github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/sluicehq/sluice/ingest/kinesis/kinesistest"
	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
)

// The Kinesis fault scenarios run `sluice ingest` as child processes
// against kinesalite (scripts/kinesalite.sh), kill them with SIGKILL,
// reshard the stream under them and scale them up and down. Every scenario
// ends with the verifier: the committed (shard, record) set equals what
// PutRecords answered, none lost, none twice.
func TestKinesisFaults(t *testing.T) {
	if os.Getenv("SLUICE_FAULTS") == "" {
		t.Skip("the fault suite runs with SLUICE_FAULTS=1 (make faults)")
	}
	kinesistest.Endpoint(t) // skips (or fails under CI) without scripts/kinesalite.sh
	bin := testkit.SluiceBinary(t)
	t.Run("crash-20-kills-200k-records-4-shards", func(t *testing.T) { kinesisCrash(t, bin) })
	t.Run("resharding-split-merge-while-killing", func(t *testing.T) { kinesisResharding(t, bin) })
	t.Run("scaling-1-3-2", func(t *testing.T) { kinesisScaling(t, bin) })
	t.Run("throttled-and-expired-iterators", func(t *testing.T) { kinesisThrottled(t, bin) })
	t.Run("kinesalite-restart", func(t *testing.T) { kinesisServerRestart(t, bin) })
}

// kinesisRig is a kinesalite of its own (a fresh server per scenario: it
// keeps every record in memory), a stream, a lake directory, a sluice.yaml
// pointing at the stream through a counting proxy, and the ingesters
// started on it.
type kinesisRig struct {
	t         *testing.T
	bin, dir  string
	procs     *testkit.Procs
	server    *testkit.Proc
	port      string
	data      string             // the server's data directory; "" in memory
	kc        *awskinesis.Client // straight to the server: the producer and resharding
	proxy     *kinesistest.Proxy
	stream    string
	bucket    objstore.Bucket
	commits   *lake.CommitLog // one log, whose cache makes repeated reads cheap
	config    string
	ingesters int

	mu       sync.Mutex
	produced *kinesistest.Produced
}

const kinesisTable = "kevents"

func newKinesisRig(t *testing.T, bin string, shards int32, data string) *kinesisRig {
	t.Helper()
	dir := t.TempDir()
	r := &kinesisRig{t: t, bin: bin, dir: dir, procs: testkit.NewProcs(t, dir), data: data,
		stream: kinesistest.StreamName("faults"), produced: kinesistest.NewProduced()}
	r.server, r.port = startKinesalite(t, r.procs, "kinesalite-1", "0", data)
	endpoint := "http://127.0.0.1:" + r.port
	r.kc, r.proxy = kinesistest.NewClient(endpoint), kinesistest.NewProxy(t, endpoint)
	kinesistest.CreateStream(t, r.kc, r.stream, shards)
	lakeDir := filepath.Join(dir, "lake")
	b, err := objstore.NewLocal(lakeDir)
	if err != nil {
		t.Fatal(err)
	}
	r.bucket, r.commits = b, lake.NewCommitLog(b)
	if err := os.WriteFile(filepath.Join(dir, "tables.yaml"), kinesistest.TableYAML(kinesisTable, r.stream), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`tables_file: tables.yaml
kinesis:
  endpoint: %s
  region: %s
  access_key_id: %s
  secret_access_key: %s
  poll_interval: 250ms
  max_records: 1000
  lease_duration: 1500ms
  lease_renew: 500ms
store:
  local_dir: %q
ingest:
  flush_records: 5000
  flush_interval: 300ms
  flush_timeout: 30s
http:
  addr: 127.0.0.1:0
`, r.proxy.URL, kinesistest.Region, kinesistest.AccessKey, kinesistest.SecretKey, lakeDir)
	r.config = filepath.Join(dir, "sluice.yaml")
	if err := os.WriteFile(r.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *kinesisRig) startIngester() *testkit.Proc {
	r.t.Helper()
	return startIngester(r.t, r.procs, r.bin, r.config, &r.ingesters)
}

// produce puts n records (ids prefix0..) in the background; the returned
// channel gets the producer's error (nil) once all are put.
func (r *kinesisRig) produce(prefix string, n int) chan error {
	done := make(chan error, 1)
	go func() {
		p := kinesistest.NewProduced()
		err := kinesistest.Put(context.Background(), r.kc, r.stream, p, prefix, 0, n, 1000)
		r.mu.Lock()
		for id, s := range p.Shard {
			r.produced.Shard[id], r.produced.Seq[id], r.produced.Key[id] = s, p.Seq[id], p.Key[id]
		}
		r.produced.Order = append(r.produced.Order, p.Order...)
		r.mu.Unlock()
		done <- err
	}()
	return done
}

// committedRows sums the rows the chains hold (cheap: records only).
func (r *kinesisRig) committedRows() int64 {
	chains, err := r.commits.Chains(context.Background(), kinesisTable)
	if err != nil {
		r.t.Fatal(err)
	}
	var n int64
	for _, ch := range chains {
		for _, rec := range ch.Records {
			n += rec.Records
		}
	}
	return n
}

func (r *kinesisRig) waitRows(want int, timeout time.Duration) {
	r.t.Helper()
	deadline := time.Now().Add(timeout)
	for r.committedRows() < int64(want) {
		if time.Now().After(deadline) {
			r.t.Fatalf("after %s only %d of %d rows committed", timeout, r.committedRows(), want)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// verify compares the lake with the producer's truth.
func (r *kinesisRig) verify() kinesistest.Committed {
	r.t.Helper()
	got := kinesistest.ReadCommitted(r.t, r.bucket, kinesisTable)
	problems := kinesistest.Check(r.produced, got)
	for _, p := range problems {
		r.t.Error(p)
	}
	r.t.Logf("verifier: %d produced, %d committed rows over %d chains; %d problems", len(r.produced.Shard), got.Count(), len(got.Chains), len(problems))
	return got
}

func stopAll(t *testing.T, cs ...*testkit.Proc) {
	t.Helper()
	for _, c := range cs {
		if code, err := c.Stop(syscall.SIGTERM, 60*time.Second); err != nil || code != 0 {
			t.Errorf("%s: exit %d, %v", c.Name, code, err)
		}
	}
}

func kinesisCrash(t *testing.T, bin string) {
	const records, kills = 200_000, 20
	r := newKinesisRig(t, bin, 4, "")
	started := time.Now()
	done := r.produce("c", records)
	ing := r.startIngester()
	killed := 0
	zombies := 0
	for produced := false; killed < kills || !produced; {
		// Each ingester lives until it committed something (at least 2s,
		// at most 15s), so that every kill lands mid-stream and the run
		// makes progress however slow the machine is.
		before := r.committedRows()
		time.Sleep(time.Duration(2000+killed%4*300) * time.Millisecond)
		for wait := time.Now().Add(13 * time.Second); r.committedRows() == before && time.Now().Before(wait); {
			time.Sleep(200 * time.Millisecond)
		}
		if killed%5 == 4 {
			// A zombie: stopped past its lease, a new ingester takes its
			// shards, then it runs again for a while (its commits must
			// lose to the new owner's) before it is killed.
			if err := ing.Signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			old := ing
			ing = r.startIngester()
			time.Sleep(3 * time.Second)
			if err := old.Signal(syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Second)
			if _, err := old.Stop(syscall.SIGKILL, 10*time.Second); err != nil {
				t.Fatal(err)
			}
			zombies++
		} else {
			if _, err := ing.Stop(syscall.SIGKILL, 10*time.Second); err != nil {
				t.Fatal(err)
			}
			ing = r.startIngester()
		}
		killed++
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			produced = true
		default:
		}
		if killed > 200 {
			t.Fatal("producer did not finish")
		}
	}
	producedAt := time.Since(started)
	r.waitRows(records, 180*time.Second)
	stopAll(t, ing)
	r.verify()
	t.Logf("%d records over 4 shards, %d SIGKILLs (%d of them after a SIGSTOP past the lease: zombies), produced in %s, all committed after %s",
		records, killed, zombies, producedAt.Round(time.Second), time.Since(started).Round(time.Second))
}

func kinesisResharding(t *testing.T, bin string) {
	r := newKinesisRig(t, bin, 2, "")
	ing := r.startIngester()
	kill := func() {
		if _, err := ing.Stop(syscall.SIGKILL, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		ing = r.startIngester()
	}
	waitProduced := func(done chan error) {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	done := r.produce("a", 8000)
	time.Sleep(1500 * time.Millisecond)
	kill()
	open := kinesistest.OpenShards(t, r.kc, r.stream)
	kinesistest.Split(t, r.kc, r.stream, aws.ToString(open[0].ShardId))
	waitProduced(done)
	done = r.produce("b", 8000)
	time.Sleep(time.Second)
	kill()
	open = kinesistest.OpenShards(t, r.kc, r.stream)
	kinesistest.Split(t, r.kc, r.stream, aws.ToString(open[2].ShardId))
	time.Sleep(time.Second)
	kill()
	waitProduced(done)
	done = r.produce("c", 8000)
	open = kinesistest.OpenShards(t, r.kc, r.stream)
	kinesistest.Merge(t, r.kc, r.stream, aws.ToString(open[0].ShardId), aws.ToString(open[1].ShardId))
	time.Sleep(time.Second)
	kill()
	waitProduced(done)
	r.waitRows(len(r.produced.Shard), 60*time.Second)
	time.Sleep(time.Second)
	stopAll(t, ing)
	got := r.verify()
	shards := kinesistest.AllShards(t, r.kc, r.stream)
	for _, p := range kinesistest.CheckResharding(shards, got) {
		t.Error(p)
	}
	for _, p := range kinesistest.CheckKeyOrder(r.produced, got) {
		t.Error(p)
	}
	// A finished parent is never read again: no GetRecords call on a
	// closed shard after its end link was committed (a second of slack for
	// the call that found the end).
	calls := r.proxy.Calls()
	for _, ch := range got.Chains {
		last := ch.Records[len(ch.Records)-1]
		if last.Kind != lake.LinkEnd {
			continue
		}
		for _, at := range calls[ch.Partition] {
			if at.After(last.CommittedAt.Add(time.Second)) {
				t.Errorf("shard %s read at %s, after its chain ended at %s", ch.Partition, at.Format(time.RFC3339Nano), last.CommittedAt.Format(time.RFC3339Nano))
				break
			}
		}
	}
	t.Logf("%d shards (%d closed), %d ingesters", len(shards), len(shards)-len(kinesistest.OpenShards(t, r.kc, r.stream)), r.ingesters)
}

func kinesisScaling(t *testing.T, bin string) {
	r := newKinesisRig(t, bin, 4, "")
	stop := make(chan struct{})
	done := r.produceUntil("s", stop)
	a := r.startIngester()
	r.waitProgress(60 * time.Second)
	b, c := r.startIngester(), r.startIngester()
	// Every process gets shards and commits from them: the lake names the
	// writer of each link.
	deadline := time.Now().Add(90 * time.Second)
	for len(r.dataWriters()) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("after 90s links written by %d processes, want all 3: the shards were not shared", len(r.dataWriters()))
		}
		time.Sleep(250 * time.Millisecond)
	}
	stopAll(t, c)
	r.waitProgress(60 * time.Second)
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	r.waitRows(len(r.produced.Shard), 120*time.Second)
	time.Sleep(time.Second)
	stopAll(t, a, b)
	r.verify()
	for shard, n := range r.proxy.MaxRate() {
		if n > 5 {
			t.Errorf("shard %s: %d GetRecords calls within one second over all processes, want at most 5", shard, n)
		}
		t.Logf("shard %s: at most %d GetRecords calls per second", shard, n)
	}
}

// produceUntil puts rounds of 1000 records until stop is closed.
func (r *kinesisRig) produceUntil(prefix string, stop chan struct{}) chan error {
	done := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			if err := <-r.produce(fmt.Sprintf("%s%d-", prefix, i), 1000); err != nil {
				done <- err
				return
			}
		}
	}()
	return done
}

// waitProgress waits until more rows are committed than now.
func (r *kinesisRig) waitProgress(timeout time.Duration) {
	r.t.Helper()
	before := r.committedRows()
	r.waitRows(int(before)+1, timeout)
}

// dataWriters returns the writers (one per process) of the data links.
func (r *kinesisRig) dataWriters() map[string]bool {
	chains, err := r.commits.Chains(context.Background(), kinesisTable)
	if err != nil {
		r.t.Fatal(err)
	}
	writers := map[string]bool{}
	for _, ch := range chains {
		for _, rec := range ch.Records {
			if rec.Kind == lake.LinkData {
				writers[rec.Writer] = true
			}
		}
	}
	return writers
}

func kinesisThrottled(t *testing.T, bin string) {
	r := newKinesisRig(t, bin, 2, "")
	r.proxy.Inject(0.2, 0.1)
	ing := r.startIngester()
	// Several small rounds, so that the reader makes many calls.
	for i := range 5 {
		if err := <-r.produce(fmt.Sprintf("t%d-", i), 4000); err != nil {
			t.Fatal(err)
		}
		time.Sleep(1500 * time.Millisecond)
	}
	// A bound against a stalled reader, not a pace: with a fifth of the
	// calls throttled the pause between calls wanders (see shardPoll).
	r.waitRows(len(r.produced.Shard), 90*time.Second)
	stopAll(t, ing)
	r.verify()
	inj := r.proxy.Injected()
	if inj["ProvisionedThroughputExceededException"] == 0 || inj["ExpiredIteratorException"] == 0 {
		t.Errorf("injected %v: the scenario did not throttle or expire anything", inj)
	}
	t.Logf("injected %v", inj)
}

// startKinesalite runs a kinesalite of the test's own, keeping its streams
// in dataDir (so that a restart finds them), on port ("0": a free one), and
// returns it and its port.
func startKinesalite(t *testing.T, procs *testkit.Procs, name, port, dataDir string) (*testkit.Proc, string) {
	t.Helper()
	modules := os.Getenv("SLUICE_TEST_KINESALITE_MODULES")
	if modules == "" {
		t.Fatal("SLUICE_TEST_KINESALITE_MODULES not set (scripts/kinesalite.sh start writes it)")
	}
	portFile := filepath.Join(t.TempDir(), name+".port")
	c, _, err := procs.Start(name, "node", false, filepath.Join(repoRoot, "scripts", "kinesalite-server.js"), modules, portFile, port, dataDir)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if data, err := os.ReadFile(portFile); err == nil && len(data) > 0 {
			return c, string(data)
		}
		if !c.Alive() || time.Now().After(deadline) {
			t.Fatalf("%s did not start\n%s", name, c.Tail(20))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The Kinesis server goes away for a few seconds (SIGKILL) while an
// ingester reads, and comes back with its data: reading resumes from the
// chains, nothing lost or doubled.
func kinesisServerRestart(t *testing.T, bin string) {
	r := newKinesisRig(t, bin, 2, t.TempDir())
	ing := r.startIngester()
	if err := <-r.produce("r1-", 6_000); err != nil {
		t.Fatal(err)
	}
	r.waitRows(3_000, 30*time.Second)
	if _, err := r.server.Stop(syscall.SIGKILL, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second) // the ingester's calls fail meanwhile
	r.server, _ = startKinesalite(t, r.procs, "kinesalite-2", r.port, r.data)
	if err := <-r.produce("r2-", 6_000); err != nil {
		t.Fatal(err)
	}
	r.waitRows(len(r.produced.Shard), 60*time.Second)
	stopAll(t, ing)
	r.verify()
}
