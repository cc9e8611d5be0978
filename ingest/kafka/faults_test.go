package kafka

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/ingest"
	"github.com/sluicehq/sluice/internal/testkit/kafkatest"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/objstore/objstoretest"
)

// These tests each inject one fault of the commit protocol's list (the lake
// v2 issue) on the real path: a kfake broker, the Kafka source, the
// pipeline, the writer and a store. Each ends in a check against what the
// producer had acknowledged, by event id: offsets alone would not tell a
// re-created topic's records from the old ones.

// faultBucket fails or delays uploads chosen by putHook; every key written
// is remembered, so a test can see that none was written twice.
type faultBucket struct {
	objstore.Bucket
	putHook    func(key string, n int64) error     // n counts raw uploads, from 1
	commitHook func(key string, data []byte) error // called before each conditional create, concurrently
	raw        atomic.Int64
	mu         sync.Mutex
	written    map[string]int
}

func newFaultBucket(b objstore.Bucket) *faultBucket {
	return &faultBucket{Bucket: b, written: map[string]int{}}
}

func (f *faultBucket) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if strings.HasPrefix(key, lake.CommitsRoot) && f.commitHook != nil {
		// A commit written without a condition passes the same gate.
		if err := f.commitHook(key, nil); err != nil {
			return err
		}
	}
	if strings.HasPrefix(key, "events/") && f.putHook != nil {
		if err := f.putHook(key, f.raw.Add(1)); err != nil {
			return err
		}
	}
	f.mu.Lock()
	f.written[key]++
	f.mu.Unlock()
	return f.Bucket.Put(ctx, key, r, size)
}

func (f *faultBucket) PutIfAbsent(ctx context.Context, key string, data []byte) error {
	if f.commitHook != nil {
		if err := f.commitHook(key, data); err != nil {
			return err
		}
	}
	return f.Bucket.PutIfAbsent(ctx, key, data)
}

// produceIDs produces n good events with ids prefix-0 ... prefix-(n-1) to
// topic and returns the ids the broker acknowledged.
func produceIDs(t *testing.T, brokers []string, topic, prefix string, n int, opts ...kgo.Opt) map[string]bool {
	t.Helper()
	acked := map[string]bool{}
	for id := range produceIDsTo(t, brokers, topic, prefix, n, opts...) {
		acked[id] = true
	}
	return acked
}

// produceIDsTo is produceIDs that also says which partition took each id.
func produceIDsTo(t *testing.T, brokers []string, topic, prefix string, n int, opts ...kgo.Opt) map[string]int32 {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.RoundRobinPartitioner())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	acked := map[string]int32{}
	ts := time.Now().UTC().Add(-time.Hour)
	for i := range n {
		id := fmt.Sprintf("%s-%d", prefix, i)
		v := fmt.Appendf(nil, `{"ts":%q,"event_id":%q,"user_id":"u%d","event_type":"click","amount":1,"latency_ms":1,"ok":true}`,
			ts.Add(time.Duration(i)*time.Millisecond).Format(time.RFC3339Nano), id, i%7)
		r, err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: topic, Value: v}).First()
		if err != nil {
			t.Fatalf("produce %s: %v", id, err)
		}
		acked[id] = r.Partition
	}
	return acked
}

// committedIDs counts each event id in the committed raw objects.
func committedIDs(t *testing.T, b objstore.Bucket) map[string]int {
	t.Helper()
	ctx := context.Background()
	recs, err := lake.NewCommitLog(b).Records(ctx, "events")
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		EventID string `parquet:"event_id"`
	}
	out := map[string]int{}
	for _, rec := range recs {
		for _, obj := range rec.Objects {
			if obj.Kind != lake.KindRaw {
				continue
			}
			rc, err := b.Get(ctx, obj.Key)
			if err != nil {
				t.Fatal(err)
			}
			data, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				t.Fatal(err)
			}
			rows, err := parquet.Read[row](bytes.NewReader(data), int64(len(data)))
			if err != nil {
				t.Fatalf("read %s: %v", obj.Key, err)
			}
			for _, r := range rows {
				out[r.EventID]++
			}
		}
	}
	return out
}

// checkIDs fails unless every acknowledged id is committed exactly once and
// nothing else is.
func checkIDs(t *testing.T, want map[string]bool, got map[string]int) {
	t.Helper()
	var lost, dup, extra []string
	for id := range want {
		switch n := got[id]; {
		case n == 0:
			lost = append(lost, id)
		case n > 1:
			dup = append(dup, id)
		}
	}
	for id := range got {
		if !want[id] {
			extra = append(extra, id)
		}
	}
	if len(lost)+len(dup)+len(extra) > 0 {
		t.Fatalf("exactly-once violated against the producer's acks: %d lost (e.g. %.5q), %d duplicated (e.g. %.5q), %d never produced (e.g. %.5q)",
			len(lost), lost, len(dup), dup, len(extra), extra)
	}
}

func waitIDs(t *testing.T, b objstore.Bucket, want map[string]bool, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := committedIDs(t, b)
		missing := 0
		for id := range want {
			if got[id] == 0 {
				missing++
			}
		}
		if missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s, %d of %d acknowledged events are not committed", timeout, missing, len(want))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func union(sets ...map[string]bool) map[string]bool {
	out := map[string]bool{}
	for _, s := range sets {
		for k := range s {
			out[k] = true
		}
	}
	return out
}

func chainOf(t *testing.T, b objstore.Bucket, partition string) lake.Chain {
	t.Helper()
	c, err := lake.NewCommitLog(b).Chain(context.Background(), "events", SourceName(testTopic), partition)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func admin(t *testing.T, c *kfake.Cluster) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

// Fault 1: two flushes of a partition with no data committed yet are in
// flight; the later one fails first, the earlier one fails after it. The
// rewind must restart where the chain ends once both have settled, not at
// the later flush's first offset.
func TestLaterFlushFailsFirstBeforeFirstCommit(t *testing.T) {
	c := kafkatest.NewCluster(t, testTopic, 1)
	want := produceIDs(t, c.ListenAddrs(), testTopic, "a", 3000)
	b := newFaultBucket(objstoretest.NewLocal(t))
	// The first two raw uploads (two flushes in flight) wait for each other;
	// then the later flush's (the larger number in its name: link or first
	// offset) fails at once and the earlier one's fails after it.
	var mu sync.Mutex
	var arrived []int64
	both, laterFailed := make(chan struct{}), make(chan struct{})
	b.putHook = func(key string, n int64) error {
		if n > 2 {
			return nil
		}
		num := flushNumber(t, key)
		mu.Lock()
		arrived = append(arrived, num)
		if len(arrived) == 2 {
			close(both)
		}
		mu.Unlock()
		select {
		case <-both:
		case <-time.After(10 * time.Second):
			t.Error("the two flushes were never in flight together")
			return nil
		}
		mu.Lock()
		later := num == max(arrived[0], arrived[1])
		mu.Unlock()
		if later {
			defer close(laterFailed)
			return errors.New("injected: the later flush's upload fails first")
		}
		<-laterFailed
		time.Sleep(300 * time.Millisecond)
		return errors.New("injected: the earlier flush's upload fails last")
	}
	// Small fetches, so that several flushes start one after another.
	cfg := Config{Brokers: c.ListenAddrs(), Group: "g", FetchMaxBytes: 16 << 10, FetchMaxPartitionBytes: 16 << 10}
	src := startSourceWith(t, cfg, b, ingest.WriterConfig{FlushRecords: 300, FlushInterval: 500 * time.Millisecond}, newProcMetrics(prometheus.NewRegistry()))
	waitIDs(t, b, want, 30*time.Second)
	src.stop(t)
	checkIDs(t, want, committedIDs(t, b))
	if b.raw.Load() < 3 {
		t.Fatalf("only %d raw uploads: the two failing flushes never overlapped", b.raw.Load())
	}
}

// flushNumber is the 20-digit number in a raw object's name, which grows
// with each flush of a partition.
func flushNumber(t *testing.T, key string) int64 {
	t.Helper()
	for _, part := range strings.Split(key[strings.LastIndex(key, "/")+1:], "-") {
		if len(part) == 20 {
			var n int64
			if _, err := fmt.Sscan(part, &n); err == nil {
				return n
			}
		}
	}
	t.Fatalf("no flush number in %s", key)
	return 0
}

// Fault 7: a rewind makes the writer upload the same records again; no key
// may be written twice (a committed object must never be replaced).
func TestObjectKeysNeverReused(t *testing.T) {
	c := kafkatest.NewCluster(t, testTopic, 2)
	want := produceIDs(t, c.ListenAddrs(), testTopic, "k", 2000)
	b := newFaultBucket(objstoretest.NewLocal(t))
	// Commits fail after their objects were uploaded: the retry uploads the
	// same records again.
	attempted := map[string]bool{}
	var mu sync.Mutex
	b.commitHook = func(key string, data []byte) error {
		mu.Lock()
		defer mu.Unlock()
		if bytes.Contains(data, []byte(`"kind":"genesis"`)) || attempted[key] || len(attempted) >= 6 {
			return nil
		}
		attempted[key] = true // each link's first attempt fails, after its objects were uploaded
		return errors.New("injected commit failure")
	}
	src := startSource(t, c.ListenAddrs(), "g", b, ingest.WriterConfig{FlushRecords: 150, FlushInterval: 50 * time.Millisecond}, newProcMetrics(prometheus.NewRegistry()))
	waitIDs(t, b, want, 30*time.Second)
	src.stop(t)
	checkIDs(t, want, committedIDs(t, b))
	b.mu.Lock()
	defer b.mu.Unlock()
	for key, n := range b.written {
		if n > 1 {
			t.Errorf("%s written %d times", key, n)
		}
	}
}

// Fault 2, first half: the topic is deleted and re-created while the
// source runs. Its offsets restart at 0, far below the chain end: the new
// records must be ingested under a reset link, not dropped as redeliveries.
func TestTopicRecreatedIsANewIncarnation(t *testing.T) {
	c := kafkatest.NewCluster(t, testTopic, 1)
	adm := admin(t, c)
	before := produceIDs(t, c.ListenAddrs(), testTopic, "old", 500)
	b := objstoretest.NewLocal(t)
	src := startSource(t, c.ListenAddrs(), "g", b, ingest.WriterConfig{FlushRecords: 100, FlushInterval: 50 * time.Millisecond}, newProcMetrics(prometheus.NewRegistry()))
	waitIDs(t, b, before, 30*time.Second)

	ctx := context.Background()
	if _, err := adm.DeleteTopics(ctx, testTopic); err != nil {
		t.Fatal(err)
	}
	waitTopic(t, adm, false)
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, testTopic); err != nil {
		t.Fatal(err)
	}
	waitTopic(t, adm, true)
	after := produceIDs(t, c.ListenAddrs(), testTopic, "new", 120) // offsets 0..119, below the chain end 500
	want := union(before, after)
	waitIDs(t, b, want, 45*time.Second)
	src.stop(t)
	checkIDs(t, want, committedIDs(t, b))

	chain := chainOf(t, b, "0")
	var resets int
	for _, r := range chain.Records {
		if r.Kind == lake.LinkReset {
			resets++
		}
	}
	if resets != 1 {
		t.Errorf("%d reset links, want 1 for the re-created topic", resets)
	}
	if end, _ := chain.End(); end.Next != lake.PositionOf(120) {
		t.Errorf("chain ends at %s, want 120 in the new topic", end.Next)
	}
}

func waitTopic(t *testing.T, adm *kadm.Client, exists bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		td, err := adm.ListTopics(context.Background(), testTopic)
		if err == nil && td.Has(testTopic) == exists && (!exists || td[testTopic].Err == nil) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("topic exists should be %v", exists)
}

// Fault 2, second half: retention deletes records past the chain end while
// nobody reads the partition. The hole must become a gap link of the right
// size, with both start offsets; with latest, the reset must not jump to
// the log end and skip what is still there.
func TestRetentionPastChainEndIsAGap(t *testing.T) {
	for _, start := range []string{"earliest", "latest"} {
		t.Run(start, func(t *testing.T) {
			c := kafkatest.NewCluster(t, testTopic, 1)
			adm := admin(t, c)
			b := objstoretest.NewLocal(t)
			reg := prometheus.NewRegistry()
			cfg := Config{Brokers: c.ListenAddrs(), Group: "g", StartOffset: start}
			wcfg := ingest.WriterConfig{FlushRecords: 100, FlushInterval: 50 * time.Millisecond}
			src := startSourceWith(t, cfg, b, wcfg, newProcMetrics(reg))
			waitGenesis(t, b)
			first := produceIDs(t, c.ListenAddrs(), testTopic, "first", 300) // offsets 0..299
			waitIDs(t, b, first, 30*time.Second)
			src.stop(t)

			second := produceIDs(t, c.ListenAddrs(), testTopic, "second", 500) // offsets 300..799
			// Retention takes everything below offset 600.
			var offs kadm.Offsets
			offs.Add(kadm.Offset{Topic: testTopic, Partition: 0, At: 600})
			if resp, err := adm.DeleteRecords(context.Background(), offs); err != nil || resp.Error() != nil {
				t.Fatalf("delete records: %v %v", err, resp.Error())
			}
			survived := map[string]bool{}
			for i := 300; i < 500; i++ {
				survived[fmt.Sprintf("second-%d", i)] = true // offsets 600..799
			}
			reg = prometheus.NewRegistry()
			src = startSourceWith(t, cfg, b, wcfg, newProcMetrics(reg))
			want := union(first, survived)
			waitIDs(t, b, want, 30*time.Second)
			src.stop(t)
			checkIDs(t, want, committedIDs(t, b))
			_ = second

			gaps := chainOf(t, b, "0").Gaps()
			if len(gaps) != 1 || gaps[0].First != lake.PositionOf(300) || gaps[0].Next != lake.PositionOf(600) {
				t.Fatalf("gaps = %+v, want one gap link [300, 600)", gaps)
			}
			if n := metricValue(t, reg, "sluice_ingest_gap_positions_total", "events", ""); n != 300 {
				t.Errorf("gap metric = %v, want 300", n)
			}
		})
	}
}

func waitGenesis(t *testing.T, b objstore.Bucket) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if _, ok := chainOf(t, b, "0").End(); ok {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("the partition was not opened")
}

// Fault 3: with start_offset latest, the first owner dies before its first
// data commit. The next owner must start where the first one's start was
// resolved (the genesis), not resolve latest again and skip what arrived
// in between.
func TestLatestIsResolvedOnce(t *testing.T) {
	c := kafkatest.NewCluster(t, testTopic, 1)
	ignored := produceIDs(t, c.ListenAddrs(), testTopic, "before", 100) // before the table started: not wanted
	_ = ignored
	b := newFaultBucket(objstoretest.NewLocal(t))
	b.putHook = func(string, int64) error { return errors.New("injected: the first owner never commits data") }
	cfg := Config{Brokers: c.ListenAddrs(), Group: "g", StartOffset: "latest"}
	wcfg := ingest.WriterConfig{FlushRecords: 50, FlushInterval: 50 * time.Millisecond}
	first := startSourceWith(t, cfg, b, wcfg, newProcMetrics(prometheus.NewRegistry()))
	waitGenesis(t, b)
	want := produceIDs(t, c.ListenAddrs(), testTopic, "during", 200)
	time.Sleep(500 * time.Millisecond) // the first owner fetches them and fails to commit
	first.cancel()
	<-first.done
	first.w.Close()

	b.putHook = nil
	second := startSourceWith(t, cfg, b, wcfg, newProcMetrics(prometheus.NewRegistry()))
	waitIDs(t, b, want, 30*time.Second)
	second.stop(t)
	checkIDs(t, want, committedIDs(t, b))
}

// Fault 3, second half: partitions added to the topic while the table runs
// with latest start at their beginning: records produced before the source
// noticed them are kept.
func TestPartitionsAddedMidRunStartAtTheirBeginning(t *testing.T) {
	c := kafkatest.NewCluster(t, testTopic, 2)
	adm := admin(t, c)
	b := objstoretest.NewLocal(t)
	cfg := Config{Brokers: c.ListenAddrs(), Group: "g", StartOffset: "latest"}
	src := startSourceWith(t, cfg, b, ingest.WriterConfig{FlushRecords: 100, FlushInterval: 50 * time.Millisecond}, newProcMetrics(prometheus.NewRegistry()),
		kgo.MetadataMinAge(100*time.Millisecond), kgo.MetadataMaxAge(time.Second))
	waitGenesis(t, b)
	if _, err := adm.CreatePartitions(context.Background(), 2, testTopic); err != nil {
		t.Fatal(err)
	}
	// Produced at once, before the consumer's metadata shows the new partitions.
	want := produceIDs(t, c.ListenAddrs(), testTopic, "grown", 400)
	waitIDs(t, b, want, 30*time.Second)
	src.stop(t)
	checkIDs(t, want, committedIDs(t, b))
	for _, p := range []string{"2", "3"} {
		if n := len(chainOf(t, b, p).Records); n < 2 {
			t.Errorf("partition %s has %d links, want a genesis and data", p, n)
		}
	}
}

// Fault 8: records of aborted transactions are never ingested; committed
// transactions are, once.
func TestAbortedTransactionsAreNotIngested(t *testing.T) {
	c := kafkatest.NewCluster(t, testTopic, 2)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.TransactionalID("txn-producer"), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	want := map[string]bool{}
	ts := time.Now().UTC().Add(-time.Hour).Format(time.RFC3339Nano)
	for txn := range 6 {
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		commit := txn%2 == 0
		for i := range 50 {
			id := fmt.Sprintf("txn%d-%d", txn, i)
			v := fmt.Appendf(nil, `{"ts":%q,"event_id":%q,"user_id":"u","event_type":"click","amount":1,"latency_ms":1,"ok":true}`, ts, id)
			if err := cl.ProduceSync(ctx, &kgo.Record{Topic: testTopic, Value: v}).FirstErr(); err != nil {
				t.Fatal(err)
			}
			if commit {
				want[id] = true
			}
		}
		if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatal(err)
		}
	}
	// A last plain record marks the end: once it is in, everything before is.
	want = union(want, produceIDs(t, c.ListenAddrs(), testTopic, "tail", 2))
	b := objstoretest.NewLocal(t)
	src := startSource(t, c.ListenAddrs(), "g", b, ingest.WriterConfig{FlushRecords: 40, FlushInterval: 50 * time.Millisecond}, newProcMetrics(prometheus.NewRegistry()))
	waitIDs(t, b, want, 30*time.Second)
	src.stop(t)
	checkIDs(t, want, committedIDs(t, b))
}

// Fault 4 on the real path: two owners that disagree about where the
// partition starts (one latest, one earliest) open it at once. Exactly one
// genesis is written and both continue from it.
func TestTwoOwnersAgreeOnOneGenesis(t *testing.T) {
	c := kafkatest.NewCluster(t, testTopic, 2)
	early := produceIDsTo(t, c.ListenAddrs(), testTopic, "early", 200)
	b := objstoretest.NewLocal(t)
	wcfg := ingest.WriterConfig{FlushRecords: 60, FlushInterval: 30 * time.Millisecond}
	z := startSourceWith(t, Config{Brokers: c.ListenAddrs(), Group: "owner-z", StartOffset: "earliest"}, b, wcfg, newProcMetrics(prometheus.NewRegistry()))
	l := startSourceWith(t, Config{Brokers: c.ListenAddrs(), Group: "owner-l", StartOffset: "latest"}, b, wcfg, newProcMetrics(prometheus.NewRegistry()))
	waitGenesis(t, b)
	for _, p := range []string{"0", "1"} {
		deadline := time.Now().Add(20 * time.Second)
		for len(chainOf(t, b, p).Records) == 0 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
	}
	want := produceIDs(t, c.ListenAddrs(), testTopic, "late", 400)
	// Whichever genesis won a partition, every record from it on is
	// committed once: the early ones too where it was earliest's.
	for id, p := range early {
		chain := chainOf(t, b, fmt.Sprint(p))
		if len(chain.Records) == 0 || chain.Records[0].Kind != lake.LinkGenesis {
			t.Fatalf("partition %d does not start with a genesis", p)
		}
		if chain.Records[0].First == lake.PositionOf(0) {
			want[id] = true
		}
	}
	waitIDs(t, b, want, 45*time.Second)
	z.stop(t)
	l.stop(t)
	checkIDs(t, want, committedIDs(t, b))
}

// Links carry the partition's lag: a genesis on a backlog says how much is
// waiting, and the last link once caught up says none is (the aggregator
// tells an idle partition from a lagging one by it).
func TestLinksCarryTheSourceLag(t *testing.T) {
	c := kafkatest.NewCluster(t, testTopic, 1)
	want := produceIDs(t, c.ListenAddrs(), testTopic, "lag", 500)
	b := objstoretest.NewLocal(t)
	cfg := Config{Brokers: c.ListenAddrs(), Group: "g", FetchMaxBytes: 8 << 10, FetchMaxPartitionBytes: 8 << 10}
	src := startSourceWith(t, cfg, b, ingest.WriterConfig{FlushRecords: 100, FlushInterval: 50 * time.Millisecond}, newProcMetrics(prometheus.NewRegistry()))
	waitIDs(t, b, want, 30*time.Second)
	src.stop(t)
	chain := chainOf(t, b, "0")
	if g := chain.Records[0]; g.Kind != lake.LinkGenesis || g.Lag != 500 {
		t.Errorf("genesis lag = %d, want 500 (the backlog)", g.Lag)
	}
	var lagging int
	for _, r := range chain.Records[1 : len(chain.Records)-1] {
		if r.Lag > 0 {
			lagging++
		}
	}
	if lagging == 0 {
		t.Error("no link committed while catching up says it was behind")
	}
	if last := chain.Records[len(chain.Records)-1]; last.Lag != 0 {
		t.Errorf("last link lag = %d, want 0 (caught up)", last.Lag)
	}
}
