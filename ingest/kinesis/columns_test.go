package kinesis_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/sluicehq/sluice/ingest/kinesis/kinesistest"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/objstore/objstoretest"
	"github.com/sluicehq/sluice/schema"
)

// The partition key and the arrival timestamp fill declared fields: every
// committed row holds the key it was put with (from the PutRecords
// answers) and an arrival time within the puts.
func TestKinesisSourceMapsPartitionKeyAndArrivalTime(t *testing.T) {
	endpoint := kinesistest.Endpoint(t)
	kc := kinesistest.NewClient(endpoint)
	stream := kinesistest.StreamName("cols")
	kinesistest.CreateStream(t, kc, stream, 2)
	b := objstoretest.NewLocal(t)
	tables, err := schema.Parse(fmt.Appendf(nil, `tables:
  - name: kc
    kinesis: {stream: %s, columns: {partition_key: pk, timestamp: arrived}}
    event_time: {field: ts}
    fields:
      - {name: ts, type: timestamp}
      - {name: event_id, type: string}
      - {name: pk, type: string}
      - {name: arrived, type: timestamp}
`, stream), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p := kinesistest.NewProduced()
	before := time.Now().Add(-time.Second)
	if err := kinesistest.Put(t.Context(), kc, stream, p, "a", 0, 600, 13); err != nil {
		t.Fatal(err)
	}
	after := time.Now().Add(time.Second)
	r := start(t, testConfig(endpoint, "one"), tables[0], b)
	deadline := time.Now().Add(30 * time.Second)
	var rows map[string]colRow
	for {
		rows = readColRows(t, b, "kc")
		if len(rows) >= 600 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	r.stop(t)
	rows = readColRows(t, b, "kc")
	if len(rows) != len(p.Key) {
		t.Fatalf("%d rows committed, want %d", len(rows), len(p.Key))
	}
	for id, key := range p.Key {
		row, ok := rows[id]
		switch {
		case !ok:
			t.Errorf("record %s missing", id)
		case row.PK != key:
			t.Errorf("record %s: pk %q, want the partition key %q", id, row.PK, key)
		case row.Arrived.Before(before) || row.Arrived.After(after):
			t.Errorf("record %s: arrived %s, not within the puts (%s .. %s)", id, row.Arrived, before, after)
		}
	}
}

type colRow struct {
	EventID string    `parquet:"event_id"`
	PK      string    `parquet:"pk"`
	Arrived time.Time `parquet:"arrived,timestamp(microsecond)"`
}

func readColRows(t *testing.T, b objstore.Bucket, table string) map[string]colRow {
	t.Helper()
	ctx := context.Background()
	objs, err := lake.NewCommitLog(b).LiveObjects(ctx, table)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]colRow{}
	for _, obj := range objs {
		rc, err := b.Get(ctx, obj.Key)
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		rs, err := parquet.Read[colRow](bytes.NewReader(data), int64(len(data)))
		if err != nil {
			t.Fatalf("read %s: %v", obj.Key, err)
		}
		for _, r := range rs {
			if _, dup := out[r.EventID]; dup {
				t.Errorf("record %s committed twice", r.EventID)
			}
			out[r.EventID] = r
		}
	}
	return out
}
