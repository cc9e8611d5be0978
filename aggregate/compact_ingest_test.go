package aggregate_test

// This external test drives the real ingest path (Kafka source and writer
// over an in-process kfake cluster) into the compactor. Only the test
// imports ingest; the aggregate package itself never does.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/aggregate"
	"github.com/sluicehq/sluice/ingest"
	"github.com/sluicehq/sluice/ingest/kafka"
	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/internal/testkit/kafkatest"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/objstore/objstoretest"
	"github.com/sluicehq/sluice/schema"
)

type liveRow struct {
	EventID   string `parquet:"event_id"`
	Source    string `parquet:"_source"`
	Partition string `parquet:"_partition"`
	Offset    int64  `parquet:"_offset"`
}

// readLive reads every live raw object and returns partition/offset ->
// event_id, failing on a row seen twice or an object whose row count
// differs from its record.
func readLive(t *testing.T, b objstore.Bucket, l *lake.CommitLog) (map[string]string, []lake.LiveObject) {
	t.Helper()
	ctx := context.Background()
	live, err := l.LiveObjects(ctx, "events")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, o := range live {
		rc, err := b.Get(ctx, o.Key)
		if err != nil {
			t.Fatalf("live object %s unreadable: %v", o.Key, err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		rows, err := parquet.Read[liveRow](bytes.NewReader(data), int64(len(data)))
		if err != nil {
			t.Fatalf("read %s: %v", o.Key, err)
		}
		if int64(len(rows)) != o.Rows || int64(len(data)) != o.Size {
			t.Fatalf("%s: %d rows, %d bytes; its record says %d, %d", o.Key, len(rows), len(data), o.Rows, o.Size)
		}
		for i, r := range rows {
			k := r.Partition + "/" + strconv.FormatInt(r.Offset, 10)
			if prev, dup := out[k]; dup {
				t.Fatalf("row %s seen twice (%s and %s), second time in %s", k, prev, r.EventID, o.Key)
			}
			out[k] = r.EventID
			if o.Compaction != "" && i > 0 {
				p := rows[i-1]
				if p.Source > r.Source || (p.Source == r.Source && (p.Partition > r.Partition || (p.Partition == r.Partition && p.Offset >= r.Offset))) {
					t.Fatalf("%s is not sorted at row %d", o.Key, i)
				}
			}
		}
	}
	return out, live
}

// checkPrefix checks that, per partition, the live offsets are exactly
// 0..n-1 (no gap: nothing missing; readLive already caught duplicates),
// with the event ids the producer got acknowledged for them.
func checkPrefix(t *testing.T, rows map[string]string, acked *sync.Map, partitions int) int {
	t.Helper()
	count := make([]int, partitions)
	for k := range rows {
		var p int
		fmt.Sscanf(k, "%d/", &p)
		count[p]++
	}
	for p := range partitions {
		for o := range count[p] {
			k := fmt.Sprintf("%d/%d", p, o)
			id, ok := rows[k]
			if !ok {
				t.Fatalf("partition %d has %d live rows but offset %d is missing", p, count[p], o)
			}
			if want, _ := acked.Load(k); want != nil && want.(string) != id {
				t.Fatalf("row %s holds event %s, the producer sent %v", k, id, want)
			}
		}
	}
	return len(rows)
}

// Done-when 3: ingest keeps writing small objects while two compactors run
// over the closed hours; after every run the live rows are exactly the
// committed ones, and the compacted objects are near the target size.
func TestCompactionWhileIngesting(t *testing.T) {
	const (
		partitions = 3
		total      = 40000
		target     = 128 << 10
	)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cluster := kafkatest.NewCluster(t, "events", partitions)
	b := objstoretest.NewLocal(t)
	table := testkit.SampleTable(t)
	logger := slog.New(slog.DiscardHandler)
	reg := prometheus.NewRegistry()

	w, err := ingest.NewWriter(ingest.WriterConfig{FlushRecords: 150, FlushInterval: 50 * time.Millisecond}, b, logger, ingest.NewMetrics(reg))
	if err != nil {
		t.Fatal(err)
	}
	src, err := kafka.NewSource(kafka.Config{Brokers: cluster.ListenAddrs(), Group: "g",
		SessionTimeout: 6 * time.Second, RebalanceTimeout: 10 * time.Second}, []*schema.Table{table}, w, logger, kafka.NewMetrics(reg))
	if err != nil {
		t.Fatal(err)
	}
	srcCtx, stopSrc := context.WithCancel(ctx)
	srcDone := make(chan error, 1)
	go func() { srcDone <- src.Run(srcCtx) }()

	// Event times run over three past hours in production order, so hours
	// close one after another while later ones are still being written.
	start := time.Now().UTC().Truncate(time.Hour).Add(-4 * time.Hour)
	step := 3 * time.Hour / total
	var acked sync.Map
	produced := make(chan error, 1)
	go func() {
		cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
		if err != nil {
			produced <- err
			return
		}
		defer cl.Close()
		for batch := 0; batch < total; batch += 500 {
			var recs []*kgo.Record
			for i := batch; i < batch+500; i++ {
				ts := start.Add(time.Duration(i) * step)
				recs = append(recs, &kgo.Record{Topic: "events", Key: fmt.Appendf(nil, "e%d", i), Value: fmt.Appendf(nil,
					`{"ts":%q,"event_id":"e%d-%016x","user_id":"u%d","event_type":"t%d","country":"DE","device":"mobile","amount":%d.25,"latency_ms":%d,"ok":true}`,
					ts.Format(time.RFC3339Nano), i, mix(uint64(i)), mix(uint64(i))%50000, i%5, mix(uint64(i))%100000, i%300)})
			}
			for _, r := range cl.ProduceSync(ctx, recs...) {
				if r.Err != nil {
					produced <- r.Err
					return
				}
				acked.Store(fmt.Sprintf("%d/%d", r.Record.Partition, r.Record.Offset), fmt.Sprintf("%s-%016x", r.Record.Key, mix(uint64(mustAtoi(t, string(r.Record.Key[1:]))))))
			}
			time.Sleep(40 * time.Millisecond) // keep ingest writing while compaction runs
		}
		produced <- nil
	}()

	cfg := aggregate.CompactorConfig{TargetBytes: target, CloseDelay: time.Minute, MaxGroupsPerRun: 3}
	compactors := make([]*aggregate.Compactor, 2)
	am := aggregate.NewMetrics(reg) // the compactors' series, counted together
	for i := range compactors {
		// Each has its own commit log, as separate processes would.
		compactors[i], err = aggregate.NewCompactor(cfg, b, lake.NewCommitLog(b), logger, am)
		if err != nil {
			t.Fatal(err)
		}
	}
	reader := lake.NewCommitLog(b)
	var (
		committed, conflicts, checks int
		lastLive                     int
	)
	runRound := func() {
		var wg sync.WaitGroup
		results := make([]aggregate.CompactionResult, len(compactors))
		errs := make([]error, len(compactors))
		for i, c := range compactors {
			wg.Go(func() { results[i], errs[i] = c.CompactTable(ctx, table, time.Now()) })
		}
		wg.Wait()
		for i := range compactors {
			if errs[i] != nil {
				t.Fatalf("compactor %d: %v", i, errs[i])
			}
			committed += results[i].Committed
			conflicts += results[i].Conflicts
		}
		rows, _ := readLive(t, b, reader)
		n := checkPrefix(t, rows, &acked, partitions)
		if n < lastLive {
			t.Fatalf("live rows went down from %d to %d", lastLive, n)
		}
		lastLive = n
		checks++
	}

	producing := true
	deadline := time.Now().Add(2 * time.Minute)
	for producing && time.Now().Before(deadline) {
		select {
		case err := <-produced:
			if err != nil {
				t.Fatal(err)
			}
			producing = false
		default:
		}
		runRound()
	}
	if producing {
		t.Fatal("producer did not finish")
	}
	committedDuringIngest := committed
	// Let ingest commit the rest, then compact until nothing is left to do.
	for time.Now().Before(deadline) {
		rows, _ := readLive(t, b, reader)
		if len(rows) == total {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for range 20 {
		before := committed
		runRound()
		if committed == before {
			break
		}
	}
	stopSrc()
	if err := <-srcDone; err != nil {
		t.Fatalf("source: %v", err)
	}
	w.Close()

	rows, live := readLive(t, b, reader)
	if n := checkPrefix(t, rows, &acked, partitions); n != total {
		t.Fatalf("%d live rows, want %d", n, total)
	}
	n := 0
	acked.Range(func(k, v any) bool {
		if rows[k.(string)] != v.(string) {
			t.Fatalf("produced %s=%s, live has %q", k, v, rows[k.(string)])
		}
		n++
		return true
	})
	if n != total {
		t.Fatalf("producer got %d acks, want %d", n, total)
	}

	var compacted, small []int64
	hours := map[string]int{}
	for _, o := range live {
		if o.Compaction != "" {
			compacted = append(compacted, o.Size)
			if o.Size < target/3 || o.Size > target*3/2 {
				t.Errorf("compacted %s is %d bytes, not near the %d target", o.Key, o.Size, target)
			}
		} else {
			small = append(small, o.Size)
			hours[o.Key[:len("events/dt=2006-01-02/hour=15")]]++
		}
	}
	if committedDuringIngest == 0 || len(compacted) == 0 {
		t.Fatalf("no compaction committed while ingesting (%d during, %d in all)", committedDuringIngest, committed)
	}
	t.Logf("%d rounds checked; %d groups committed (%d while ingesting), %d lost to the other compactor; "+
		"live: %d compacted objects %v bytes, %d uncompacted objects in hours %v",
		checks, committed, committedDuringIngest, conflicts, len(compacted), compacted, len(small), hours)
	if got := testutil.ToFloat64(prometheusCounter(t, reg, "sluice_aggregate_compaction_objects_out_total")); got < float64(len(compacted)) {
		t.Errorf("objects_out_total = %v, want at least the %d live compacted objects", got, len(compacted))
	}
	if got := testutil.ToFloat64(prometheusCounter(t, reg, "sluice_aggregate_compaction_bytes_in_total")); got <= 0 {
		t.Errorf("bytes_in_total = %v", got)
	}

	// Once the grace period is over the replaced objects go; the live view
	// is unchanged and still fully readable.
	time.Sleep(20 * time.Millisecond)
	deleted, err := reader.DeleteOrphans(ctx, "events", 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	after, _ := readLive(t, b, lake.NewCommitLog(b))
	if checkPrefix(t, after, &acked, partitions) != total {
		t.Fatalf("after deleting %d replaced objects, %d live rows", deleted, len(after))
	}
	t.Logf("deleted %d replaced objects", deleted)
}

// mix scrambles i (splitmix64) so ids and amounts compress like real ones.
func mix(i uint64) uint64 {
	i += 0x9e3779b97f4a7c15
	i = (i ^ (i >> 30)) * 0xbf58476d1ce4e5b9
	i = (i ^ (i >> 27)) * 0x94d049bb133111eb
	return i ^ (i >> 31)
}

func mustAtoi(t *testing.T, s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Error(err)
	}
	return n
}

func prometheusCounter(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	return collectorFunc{reg: reg, name: name}
}

// collectorFunc exposes the sum of one metric family of reg as a collector
// for testutil.ToFloat64.
type collectorFunc struct {
	reg  *prometheus.Registry
	name string
}

func (c collectorFunc) Describe(ch chan<- *prometheus.Desc) {
	ch <- prometheus.NewDesc(c.name+"_sum_for_test", "sum", nil, nil)
}

func (c collectorFunc) Collect(ch chan<- prometheus.Metric) {
	mfs, _ := c.reg.Gather()
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == c.name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(c.name+"_sum_for_test", "sum", nil, nil), prometheus.GaugeValue, sum)
}
