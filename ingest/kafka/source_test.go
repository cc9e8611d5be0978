package kafka

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/ingest"
	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/internal/testkit/kafkatest"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/objstore/objstoretest"
	"github.com/sluicehq/sluice/schema"
)

const testTopic = "events"

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type produced struct {
	good map[string]bool // "partition/offset"
	bad  map[string]bool
	// badValues keeps the bytes of bad records: dead letters must hold them exactly.
	badValues map[string][]byte
}

func goodEvent(i int, ts time.Time) []byte {
	return fmt.Appendf(nil, `{"ts":%q,"event_id":"e%d","user_id":"u%d","event_type":"click","country":"DE","device":"mobile","amount":%d.5,"latency_ms":%d,"ok":true}`,
		ts.UTC().Format(time.RFC3339Nano), i, i%37, i%100, i%1000)
}

// produce sends n records round-robin over the partitions; every badEvery-th
// one is malformed in one of several ways.
func produce(t *testing.T, brokers []string, n, badEvery int, start time.Time) produced {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	bad := [][]byte{
		[]byte(`{"ts":`),  // malformed
		[]byte(`[1,2,3]`), // not an object
		[]byte(`{"ts":"2026-11-26T10:00:00Z","event_id":"x","user_id":"u","event_type":"e","amount":"lots","latency_ms":1,"ok":true}`),                              // wrong type
		[]byte(`{"event_id":"x","user_id":"u","event_type":"e","amount":1,"latency_ms":1,"ok":true}`),                                                               // missing ts
		[]byte(`{"ts":"yesterday","event_id":"x","user_id":"u","event_type":"e","amount":1,"latency_ms":1,"ok":true}`),                                              // bad time
		[]byte(`{"ts":"1970-01-01T00:00:00Z","event_id":"x","user_id":"u","event_type":"e","amount":1,"latency_ms":1,"ok":true}`),                                   // absurd time
		[]byte(`{"ts":"2026-11-26T10:00:00Z","event_id":"` + strings.Repeat("x", 70_000) + `","user_id":"u","event_type":"e","amount":1,"latency_ms":1,"ok":true}`), // over max_record_bytes
		[]byte("{\"ts\":\"2026-11-26T10:00:00Z\",\"event_id\":\"\xff\xfe\",\"user_id\":\"u\",\"event_type\":\"e\",\"amount\":1,\"latency_ms\":1,\"ok\":true}"),      // invalid UTF-8
		[]byte(`{"ts":"2026-11-26T10:00:00Z","event_id":"x","user_id":"u","event_type":"e","amount":1,"latency_ms":99999999999999999999,"ok":true}`),                // past int64
	}
	out := produced{good: map[string]bool{}, bad: map[string]bool{}, badValues: map[string][]byte{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	var firstErr error
	for i := range n {
		var value []byte
		isBad := badEvery > 0 && i%badEvery == badEvery-1
		if isBad {
			value = bad[(i/badEvery)%len(bad)]
		} else {
			value = goodEvent(i, start.Add(time.Duration(i)*time.Millisecond))
		}
		wg.Add(1)
		cl.Produce(context.Background(), &kgo.Record{Topic: testTopic, Value: value}, func(r *kgo.Record, err error) {
			defer wg.Done()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				firstErr = err
				return
			}
			k := fmt.Sprintf("%d/%d", r.Partition, r.Offset)
			if isBad {
				out.bad[k] = true
				out.badValues[k] = r.Value
			} else {
				out.good[k] = true
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		t.Fatal(firstErr)
	}
	return out
}

type committed struct {
	rows    map[string]int // "partition/offset" -> times seen in committed raw objects
	dead    map[string]int
	reasons map[string]int
	values  map[string][]byte // dead letters' original bytes
	records int64
}

// readCommitted reads back every committed object of the table: the proof
// of exactly-once is in what readers can see, not in counters.
func readCommitted(t *testing.T, b objstore.Bucket, table string) committed {
	t.Helper()
	ctx := context.Background()
	recs, err := lake.NewCommitLog(b).Records(ctx, table)
	if err != nil {
		t.Fatal(err)
	}
	out := committed{rows: map[string]int{}, dead: map[string]int{}, reasons: map[string]int{}, values: map[string][]byte{}}
	type metaRow struct {
		Partition string `parquet:"_partition"`
		Offset    int64  `parquet:"_offset"`
	}
	for _, rec := range recs {
		out.records += rec.Records
		for _, obj := range rec.Objects {
			rc, err := b.Get(ctx, obj.Key)
			if err != nil {
				t.Fatalf("committed object %s unreadable: %v", obj.Key, err)
			}
			data, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				t.Fatal(err)
			}
			switch obj.Kind {
			case lake.KindRaw:
				rows, err := parquet.Read[metaRow](bytes.NewReader(data), int64(len(data)))
				if err != nil {
					t.Fatalf("read %s: %v", obj.Key, err)
				}
				if int64(len(rows)) != obj.Rows {
					t.Errorf("%s: commit record says %d rows, object has %d", obj.Key, obj.Rows, len(rows))
				}
				for _, r := range rows {
					out.rows[r.Partition+"/"+strconv.FormatInt(r.Offset, 10)]++
				}
			case lake.KindDeadLetter:
				for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
					var dl struct {
						Partition string  `json:"partition"`
						Offset    int64   `json:"offset"`
						Reason    string  `json:"reason"`
						Value     *string `json:"value"`
						ValueB64  []byte  `json:"value_b64"`
					}
					if err := json.Unmarshal(line, &dl); err != nil {
						t.Fatalf("dead letter line %q: %v", line, err)
					}
					k := dl.Partition + "/" + strconv.FormatInt(dl.Offset, 10)
					out.dead[k]++
					if dl.Value != nil {
						out.values[k] = []byte(*dl.Value)
					} else {
						out.values[k] = dl.ValueB64
					}
					out.reasons[dl.Reason]++
				}
			}
		}
	}
	return out
}

func checkExactlyOnce(t *testing.T, want produced, got committed) {
	t.Helper()
	lost, dup := 0, 0
	for k := range want.good {
		switch got.rows[k] {
		case 0:
			lost++
		case 1:
		default:
			dup++
		}
	}
	for k := range want.bad {
		switch got.dead[k] {
		case 0:
			lost++
		case 1:
		default:
			dup++
		}
	}
	extra := 0
	for k := range got.rows {
		if !want.good[k] {
			extra++
		}
	}
	if lost != 0 || dup != 0 || extra != 0 || len(got.rows) != len(want.good) {
		t.Fatalf("exactly-once violated: lost %d, duplicated %d, unexpected %d (want %d good, %d bad; got %d rows, %d dead)",
			lost, dup, extra, len(want.good), len(want.bad), len(got.rows), len(got.dead))
	}
}

// waitCommitted polls the commit log until it holds want records (good plus
// dead letters), bounded by timeout.
func waitCommitted(t *testing.T, b objstore.Bucket, table string, want int64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var have int64
	for time.Now().Before(deadline) {
		recs, err := lake.NewCommitLog(b).Records(context.Background(), table)
		if err != nil {
			t.Fatal(err)
		}
		have = 0
		for _, r := range recs {
			have += r.Records + r.DeadLetters
		}
		if have >= want {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("after %s only %d of %d records committed", timeout, have, want)
}

type runningSource struct {
	cancel context.CancelFunc
	done   chan error
	w      *ingest.Writer
	reg    *prometheus.Registry
}

func (r *runningSource) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Fatalf("source: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("source did not stop")
	}
	r.w.Close()
}

// procMetrics are the series of one test process, created once on reg:
// the sources a test starts on them count together, as a process's do.
type procMetrics struct {
	reg    *prometheus.Registry
	writer *ingest.Metrics
	kafka  *Metrics
}

func newProcMetrics(reg *prometheus.Registry) *procMetrics {
	return &procMetrics{reg: reg, writer: ingest.NewMetrics(reg), kafka: NewMetrics(reg)}
}

func startSource(t *testing.T, brokers []string, group string, b objstore.Bucket, wcfg ingest.WriterConfig, pm *procMetrics) *runningSource {
	t.Helper()
	return startSourceWith(t, Config{Brokers: brokers, Group: group}, b, wcfg, pm)
}

func startSourceWith(t *testing.T, cfg Config, b objstore.Bucket, wcfg ingest.WriterConfig, pm *procMetrics, opts ...kgo.Opt) *runningSource {
	t.Helper()
	w, err := ingest.NewWriter(wcfg, b, testLogger(t), pm.writer)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SessionTimeout == 0 {
		cfg.SessionTimeout, cfg.RebalanceTimeout = 6*time.Second, 10*time.Second
	}
	src, err := NewSource(cfg, []*schema.Table{testkit.SampleTable(t)}, w, testLogger(t), pm.kafka, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningSource{cancel: cancel, done: make(chan error, 1), w: w, reg: pm.reg}
	go func() { r.done <- src.Run(ctx) }()
	return r
}

func TestKafkaSourceExactlyOnceWithDeadLetters(t *testing.T) {
	c := kafkatest.NewCluster(t, testTopic, 4)
	b := objstoretest.NewLocal(t)
	start := time.Now().UTC().Add(-3 * time.Hour).Truncate(time.Hour).Add(59 * time.Minute) // spans an hour boundary
	want := produce(t, c.ListenAddrs(), 9000, 50, start)
	reg := prometheus.NewRegistry()
	src := startSource(t, c.ListenAddrs(), "g1", b, ingest.WriterConfig{FlushRecords: 700, FlushInterval: 200 * time.Millisecond}, newProcMetrics(reg))
	waitCommitted(t, b, "events", 9000, 30*time.Second)
	src.stop(t)

	got := readCommitted(t, b, "events")
	checkExactlyOnce(t, want, got)
	for k, v := range want.badValues {
		if !bytes.Equal(got.values[k], v) {
			t.Errorf("dead letter %s holds %.60q, want the original %.60q", k, got.values[k], v)
		}
	}
	for _, reason := range []string{"malformed_json", "not_object", "wrong_type", "missing_field", "bad_event_time",
		"absurd_event_time", "too_large", "invalid_utf8", "number_out_of_range"} {
		if got.reasons[reason] == 0 {
			t.Errorf("no dead letter with reason %s (got %v)", reason, got.reasons)
		}
	}
	if v := metricValue(t, reg, "sluice_ingest_records_written_total", "events", ""); int(v) != len(want.good) {
		t.Errorf("records written metric = %v, want %d", v, len(want.good))
	}
	var deadTotal float64
	for reason := range got.reasons {
		deadTotal += metricValue(t, reg, "sluice_ingest_dead_letters_total", "events", reason)
	}
	if int(deadTotal) != len(want.bad) {
		t.Errorf("dead letter metrics sum to %v, want %d", deadTotal, len(want.bad))
	}
}

func TestKafkaSourceResumesFromCommitLogNotGroupOffsets(t *testing.T) {
	c := kafkatest.NewCluster(t, testTopic, 3)
	b := objstoretest.NewLocal(t)
	start := time.Now().UTC().Add(-time.Hour)
	want := produce(t, c.ListenAddrs(), 3000, 0, start)
	src := startSource(t, c.ListenAddrs(), "g1", b, ingest.WriterConfig{FlushRecords: 400, FlushInterval: 100 * time.Millisecond}, newProcMetrics(prometheus.NewRegistry()))
	waitCommitted(t, b, "events", 3000, 30*time.Second)
	src.stop(t)

	// A new group has no offsets at all: only the commit log keeps it from
	// writing everything again.
	more := produce(t, c.ListenAddrs(), 1500, 0, start.Add(10*time.Minute))
	for k := range more.good {
		want.good[k] = true
	}
	src = startSource(t, c.ListenAddrs(), "another-group", b, ingest.WriterConfig{FlushRecords: 400, FlushInterval: 100 * time.Millisecond}, newProcMetrics(prometheus.NewRegistry()))
	waitCommitted(t, b, "events", 4500, 30*time.Second)
	src.stop(t)
	checkExactlyOnce(t, want, readCommitted(t, b, "events"))
}

// Two groups consuming the same topic into one bucket both believe they own
// every partition, like a zombie after a missed rebalance. Both are held at
// the commit of partition 0's first data link until both have read the
// chain and built their link, so the race is real: the conditional create
// must let exactly one of them win, and the other count a conflict.
func TestKafkaSourceTwoOwnersNeverDuplicate(t *testing.T) {
	c := kafkatest.NewCluster(t, testTopic, 4)
	b := newFaultBucket(objstoretest.NewLocal(t))
	contested := lake.LinkKey("events", SourceName(testTopic), "0", 1)
	var mu sync.Mutex
	arrived := 0
	both := make(chan struct{})
	b.commitHook = func(key string, _ []byte) error {
		if key != contested {
			return nil
		}
		mu.Lock()
		arrived++
		if arrived == 2 {
			close(both)
		}
		mu.Unlock()
		select {
		case <-both:
		case <-time.After(20 * time.Second):
		}
		return nil
	}
	want := produce(t, c.ListenAddrs(), 6000, 100, time.Now().UTC().Add(-time.Hour))
	cfg := ingest.WriterConfig{FlushRecords: 300, FlushInterval: 50 * time.Millisecond}
	regA, regZ := prometheus.NewRegistry(), prometheus.NewRegistry()
	a := startSource(t, c.ListenAddrs(), "owner-a", b, cfg, newProcMetrics(regA))
	z := startSource(t, c.ListenAddrs(), "owner-z", b, cfg, newProcMetrics(regZ))
	waitCommitted(t, b, "events", 6000, 60*time.Second)
	a.stop(t)
	z.stop(t)
	checkExactlyOnce(t, want, readCommitted(t, b, "events"))
	select {
	case <-both:
	default:
		t.Fatal("the two owners never met at the contested link: the race did not happen")
	}
	conflicts := metricValue(t, regA, "sluice_ingest_flush_failures_total", "events", "conflict") +
		metricValue(t, regZ, "sluice_ingest_flush_failures_total", "events", "conflict")
	if conflicts == 0 {
		t.Fatal("two owners raced for a link and no conflict was counted")
	}
}

// Members join and leave one group while records flow; every partition
// changes hands at least once.
func TestKafkaSourceRebalanceExactlyOnce(t *testing.T) {
	c := kafkatest.NewCluster(t, testTopic, 6)
	b := objstoretest.NewLocal(t)
	start := time.Now().UTC().Add(-time.Hour)
	cfg := ingest.WriterConfig{FlushRecords: 250, FlushInterval: 100 * time.Millisecond}
	pm := newProcMetrics(prometheus.NewRegistry())
	want := produce(t, c.ListenAddrs(), 2000, 0, start)
	first := startSource(t, c.ListenAddrs(), "g", b, cfg, pm)
	waitCommitted(t, b, "events", 500, 30*time.Second)
	second := startSource(t, c.ListenAddrs(), "g", b, cfg, pm)
	// The second member must have taken partitions over (its links appear)
	// before the first leaves: the rebalance is what is under test.
	deadline := time.Now().Add(30 * time.Second)
	for len(writersOf(t, b)) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the second member never committed: no partition changed hands")
		}
		batch := produce(t, c.ListenAddrs(), 300, 0, start.Add(time.Minute))
		for k := range batch.good {
			want.good[k] = true
		}
		time.Sleep(200 * time.Millisecond)
	}
	first.stop(t)
	batch := produce(t, c.ListenAddrs(), 2000, 0, start.Add(2*time.Minute))
	for k := range batch.good {
		want.good[k] = true
	}
	waitCommitted(t, b, "events", int64(len(want.good)), 60*time.Second)
	second.stop(t)
	checkExactlyOnce(t, want, readCommitted(t, b, "events"))
	// Partitions changed hands: some chain holds links of both members, and
	// after the first left, the second committed on every partition.
	byPart := writersOf(t, b)
	if len(byPart) < 2 {
		t.Fatalf("links of %d writers, want both members'", len(byPart))
	}
	var last string
	shared := 0
	for w, parts := range byPart {
		if len(parts) == 6 {
			last = w
		}
		for p := range parts {
			for other, op := range byPart {
				if other != w && op[p] {
					shared++
				}
			}
		}
	}
	if last == "" {
		t.Errorf("no member committed on all 6 partitions after the other left: %v", byPart)
	}
	if shared == 0 {
		t.Errorf("no partition holds links of both members: %v", byPart)
	}
}

// writersOf maps each writer (one per member process) to the partitions
// on whose chains it committed data.
func writersOf(t *testing.T, b objstore.Bucket) map[string]map[string]bool {
	t.Helper()
	recs, err := lake.NewCommitLog(b).Records(context.Background(), "events")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]bool{}
	for _, r := range recs {
		if r.Kind != lake.LinkData {
			continue
		}
		if out[r.Writer] == nil {
			out[r.Writer] = map[string]bool{}
		}
		out[r.Writer][r.Partition] = true
	}
	return out
}

// flakyBucket fails its first n uploads, as an object store does during an
// outage.
type flakyBucket struct {
	objstore.Bucket
	failures atomic.Int32
}

func (f *flakyBucket) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if f.failures.Add(-1) >= 0 {
		return fmt.Errorf("put %s: injected outage", key)
	}
	return f.Bucket.Put(ctx, key, r, size)
}

// A flush that fails before anything of its partition was ever committed
// must rewind to the dropped buffer's first record, not skip past it.
func TestKafkaSourceRewindsBeforeFirstCommit(t *testing.T) {
	c := kafkatest.NewCluster(t, testTopic, 2)
	b := &flakyBucket{Bucket: objstoretest.NewLocal(t)}
	b.failures.Store(3)
	want := produce(t, c.ListenAddrs(), 2000, 0, time.Now().UTC().Add(-time.Hour))
	src := startSource(t, c.ListenAddrs(), "g", b, ingest.WriterConfig{FlushRecords: 300, FlushInterval: 100 * time.Millisecond}, newProcMetrics(prometheus.NewRegistry()))
	waitCommitted(t, b, "events", 2000, 30*time.Second)
	src.stop(t)
	checkExactlyOnce(t, want, readCommitted(t, b, "events"))
	if n := metricValue(t, src.reg, "sluice_ingest_rewinds_total", "events", ""); n == 0 {
		t.Fatal("the injected failures caused no rewind")
	}
}

// metricValue reads a counter of the events table from reg; label is the
// second label's value (reason), "" for counters labelled by table only.
func metricValue(t *testing.T, reg *prometheus.Registry, name, table, label string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := true
			for _, lp := range m.GetLabel() {
				switch lp.GetName() {
				case "table":
					match = match && lp.GetValue() == table
				case "reason":
					match = match && (label == "" || lp.GetValue() == label)
				}
			}
			if match {
				sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	return sum
}
