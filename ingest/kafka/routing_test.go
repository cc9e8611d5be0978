package kafka

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/ingest"
	"github.com/sluicehq/sluice/internal/testkit/kafkatest"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/objstore/objstoretest"
	"github.com/sluicehq/sluice/schema"
)

const routedTables = `tables:
  - name: clicks
    kafka:
      topic: events
      route: {field: kind, equals: click}
      columns: {key: rkey, timestamp: broker_ts, headers: {src: src}}
    event_time: {field: ts}
    fields:
      - {name: ts, type: timestamp}
      - {name: id, type: string}
      - {name: kind, type: string}
      - {name: rkey, type: string, nullable: true}
      - {name: src, type: string, nullable: true}
      - {name: broker_ts, type: timestamp}
  - name: views
    kafka:
      topic: events
      route: {field: kind, equals: view}
      columns: {key: rkey, timestamp: broker_ts, headers: {src: src}}
    event_time: {field: ts}
    fields:
      - {name: ts, type: timestamp}
      - {name: id, type: string}
      - {name: kind, type: string}
      - {name: n, type: int64}
      - {name: rkey, type: string, nullable: true}
      - {name: src, type: string, nullable: true}
      - {name: broker_ts, type: timestamp}
`

// routedRow is what a committed row of either table must hold.
type routedRow struct {
	Partition string    `parquet:"_partition"`
	Offset    int64     `parquet:"_offset"`
	ID        string    `parquet:"id"`
	Kind      string    `parquet:"kind"`
	RKey      *string   `parquet:"rkey,optional"`
	Src       *string   `parquet:"src,optional"`
	BrokerTS  time.Time `parquet:"broker_ts,timestamp(microsecond)"`
}

type wantRow struct {
	id, kind string
	rkey     *string // nil: the record had no key
	src      *string // nil: the record had no src header
	brokerMS int64
}

// TestKafkaRoutesOneTopicIntoTwoTablesWithMetadata routes one topic into two
// tables by a field, maps the key, a header and the broker timestamp to
// columns, and checks both tables row by row against what the producer
// sent and the broker acknowledged. Views are rare (one in ten): their
// chains must still reach the end of every partition.
func TestKafkaRoutesOneTopicIntoTwoTablesWithMetadata(t *testing.T) {
	tables, err := schema.Parse([]byte(routedTables), "routed.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c := kafkatest.NewCluster(t, testTopic, 3)
	b := objstoretest.NewLocal(t)

	// Produce: kinds click (most), view (1 in 10), other and a non-JSON
	// record (no route takes them: dead letters of clicks, declared first).
	const n = 3000
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	base := time.Now().UTC().Add(-time.Hour).Truncate(time.Millisecond)
	want := map[string]map[string]wantRow{"clicks": {}, "views": {}} // table -> "partition/offset"
	unrouted := map[string][]byte{}
	ends := map[string]int64{} // partition -> its end offset
	var mu sync.Mutex
	var wg sync.WaitGroup
	var prodErr error
	produceRange := func(from, to int) {
		for i := from; i < to; i++ {
			kind := "click"
			switch {
			case i%10 == 0:
				kind = "view"
			case i%97 == 96:
				kind = "other"
			}
			value := fmt.Appendf(nil, `{"ts":%q,"id":"e%d","kind":%q,"n":%d,"rkey":"from-json","src":"from-json"}`,
				base.Add(time.Duration(i)*time.Millisecond).Format(time.RFC3339Nano), i, kind, i)
			if i == 501 {
				kind, value = "broken", []byte(`{"kind":`)
			}
			rec := &kgo.Record{Topic: testTopic, Value: value, Timestamp: base.Add(time.Duration(i) * time.Second)}
			row := wantRow{id: fmt.Sprintf("e%d", i), kind: kind, brokerMS: rec.Timestamp.UnixMilli()}
			if i%13 != 0 {
				k := fmt.Sprintf("key-%d", i)
				rec.Key, row.rkey = []byte(k), &k
			}
			if i%11 != 0 {
				src := fmt.Sprintf("src-%d", i%7)
				rec.Headers = []kgo.RecordHeader{{Key: "other", Value: []byte("x")}, {Key: "src", Value: []byte(src)}}
				row.src = &src
			}
			wg.Add(1)
			cl.Produce(context.Background(), rec, func(r *kgo.Record, err error) {
				defer wg.Done()
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					prodErr = err
					return
				}
				k := fmt.Sprintf("%d/%d", r.Partition, r.Offset)
				p := strconv.Itoa(int(r.Partition))
				ends[p] = max(ends[p], r.Offset+1)
				switch row.kind {
				case "click":
					want["clicks"][k] = row
				case "view":
					want["views"][k] = row
				default:
					unrouted[k] = r.Value
				}
			})
		}
		wg.Wait()
		if prodErr != nil {
			t.Fatal(prodErr)
		}
	}

	// Two runs, the second from the chains the first left: each table
	// resumes from its own chain end, and the topic is read once from the
	// earlier of them.
	runOnce := func() {
		reg := prometheus.NewRegistry()
		w, err := ingest.NewWriter(ingest.WriterConfig{FlushRecords: 300, FlushInterval: 200 * time.Millisecond}, b, testLogger(t), ingest.NewMetrics(reg))
		if err != nil {
			t.Fatal(err)
		}
		src, err := NewSource(Config{Brokers: c.ListenAddrs(), Group: "routed", SessionTimeout: 6 * time.Second, RebalanceTimeout: 10 * time.Second},
			tables, w, testLogger(t), NewMetrics(reg))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		run := &runningSource{cancel: cancel, done: make(chan error, 1), w: w, reg: reg}
		go func() { run.done <- src.Run(ctx) }()
		waitCommitted(t, b, "clicks", int64(len(want["clicks"])+len(unrouted)), 30*time.Second)
		waitCommitted(t, b, "views", int64(len(want["views"])), 30*time.Second)
		run.stop(t)
	}
	produceRange(0, n/2)
	runOnce()
	produceRange(n/2, n)
	runOnce()

	// The group's offsets (a hint for tools) are where both tables' chains end.
	offs, err := kadm.NewClient(cl).FetchOffsets(context.Background(), "routed")
	if err != nil {
		t.Fatal(err)
	}
	for p, end := range ends {
		n, _ := strconv.Atoi(p)
		if o, ok := offs.Lookup(testTopic, int32(n)); !ok || o.At != end {
			t.Errorf("group offset of partition %s = %+v, want %d", p, o, end)
		}
	}

	for _, table := range []string{"clicks", "views"} {
		rows, dead := readRouted(t, b, table)
		t.Logf("%s: %d rows, %d dead letters", table, len(rows), len(dead))
		if len(rows) != len(want[table]) {
			t.Errorf("%s: %d rows committed, want %d", table, len(rows), len(want[table]))
		}
		for k, wr := range want[table] {
			got, ok := rows[k]
			switch {
			case !ok:
				t.Errorf("%s: record %s (%s) missing", table, k, wr.id)
			case got.ID != wr.id || got.Kind != wr.kind:
				t.Errorf("%s: record %s holds %s/%s, want %s/%s", table, k, got.ID, got.Kind, wr.id, wr.kind)
			case !sameString(got.RKey, wr.rkey) || !sameString(got.Src, wr.src):
				t.Errorf("%s: record %s key %v src %v, want %v %v", table, k, str(got.RKey), str(got.Src), str(wr.rkey), str(wr.src))
			case got.BrokerTS.UnixMilli() != wr.brokerMS:
				t.Errorf("%s: record %s broker_ts %s, want %s", table, k, got.BrokerTS, time.UnixMilli(wr.brokerMS).UTC())
			}
		}
		if table == "clicks" {
			if len(dead) != len(unrouted) {
				t.Errorf("clicks: %d dead letters, want the %d unrouted records", len(dead), len(unrouted))
			}
			for k, v := range unrouted {
				if !bytes.Equal(dead[k], v) {
					t.Errorf("unrouted record %s: dead letter %q, want %q", k, dead[k], v)
				}
			}
		} else if len(dead) != 0 {
			t.Errorf("views: %d dead letters, want none", len(dead))
		}
		// Every table's chains cover every position of the topic, also
		// where the table's own records are rare.
		recs, err := lake.NewCommitLog(b).Records(context.Background(), table)
		if err != nil {
			t.Fatal(err)
		}
		covered := map[string]int64{}
		for _, r := range recs {
			if next, ok := r.Next.Int64(); ok {
				covered[r.Partition] = max(covered[r.Partition], next)
			}
		}
		for p, end := range ends {
			if covered[p] != end {
				t.Errorf("%s: chain of partition %s ends at %d, the partition at %d", table, p, covered[p], end)
			}
		}
	}
}

func sameString(a, b *string) bool {
	return (a == nil) == (b == nil) && (a == nil || *a == *b)
}

func str(s *string) string {
	if s == nil {
		return "<null>"
	}
	return *s
}

// readRouted reads a table's live committed objects: rows and dead letters
// by "partition/offset" (a key seen twice fails the test).
func readRouted(t *testing.T, b objstore.Bucket, table string) (map[string]routedRow, map[string][]byte) {
	t.Helper()
	ctx := context.Background()
	log := lake.NewCommitLog(b)
	objs, err := log.LiveObjects(ctx, table)
	if err != nil {
		t.Fatal(err)
	}
	deadObjs, err := log.LiveDeadLetters(ctx, table)
	if err != nil {
		t.Fatal(err)
	}
	objs = append(objs, deadObjs...)
	rows, dead := map[string]routedRow{}, map[string][]byte{}
	for _, obj := range objs {
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
			rs, err := parquet.Read[routedRow](bytes.NewReader(data), int64(len(data)))
			if err != nil {
				t.Fatalf("read %s: %v", obj.Key, err)
			}
			for _, r := range rs {
				k := r.Partition + "/" + strconv.FormatInt(r.Offset, 10)
				if _, dup := rows[k]; dup {
					t.Errorf("%s: record %s committed twice", table, k)
				}
				rows[k] = r
			}
		case lake.KindDeadLetter:
			for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
				var dl struct {
					Partition string  `json:"partition"`
					Offset    int64   `json:"offset"`
					Reason    string  `json:"reason"`
					Error     string  `json:"error"`
					Value     *string `json:"value"`
				}
				if err := json.Unmarshal(line, &dl); err != nil {
					t.Fatalf("dead letter line %q: %v", line, err)
				}
				if dl.Reason != string(schema.ReasonUnrouted) || !strings.Contains(dl.Error, "kind") {
					t.Errorf("%s: dead letter reason %s (%s), want unrouted naming the field", table, dl.Reason, dl.Error)
				}
				k := dl.Partition + "/" + strconv.FormatInt(dl.Offset, 10)
				if _, dup := dead[k]; dup {
					t.Errorf("%s: dead letter %s committed twice", table, k)
				}
				if dl.Value != nil {
					dead[k] = []byte(*dl.Value)
				}
			}
		}
	}
	return rows, dead
}
