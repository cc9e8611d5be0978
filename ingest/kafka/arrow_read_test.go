package kafka

import (
	"bytes"
	"context"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/apache/arrow/go/v15/parquet/file"
	"github.com/apache/arrow/go/v15/parquet/pqarrow"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/ingest"
	"github.com/sluicehq/sluice/internal/testkit/kafkatest"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore/objstoretest"
)

// The committed objects must be readable by an independent Parquet
// implementation: Arrow's own reader, not the parquet-go that wrote them.
func TestCommittedObjectsReadByArrowParquetReader(t *testing.T) {
	c := kafkatest.NewCluster(t, testTopic, 3)
	b := objstoretest.NewLocal(t)
	start := time.Now().UTC().Add(-2 * time.Hour).Truncate(time.Second)
	const n = 3000
	produce(t, c.ListenAddrs(), n, 0, start)
	src := startSource(t, c.ListenAddrs(), "g", b, ingest.WriterConfig{FlushRecords: 700, FlushInterval: 100 * time.Millisecond}, newProcMetrics(prometheus.NewRegistry()))
	waitCommitted(t, b, "events", n, 30*time.Second)
	src.stop(t)

	ctx := context.Background()
	recs, err := lake.NewCommitLog(b).Records(ctx, "events")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, rec := range recs {
		for _, obj := range rec.Objects {
			if obj.Kind != lake.KindRaw {
				continue
			}
			rc, err := b.Get(ctx, obj.Key)
			if err != nil {
				t.Fatal(err)
			}
			data, _ := io.ReadAll(rc)
			rc.Close()
			pf, err := file.NewParquetReader(bytes.NewReader(data))
			if err != nil {
				t.Fatalf("arrow cannot open %s: %v", obj.Key, err)
			}
			fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: 1024}, memory.DefaultAllocator)
			if err != nil {
				t.Fatal(err)
			}
			tbl, err := fr.ReadTable(ctx)
			if err != nil {
				t.Fatalf("arrow cannot read %s: %v", obj.Key, err)
			}
			checkArrowTable(t, tbl, start, seen)
			tbl.Release()
			pf.Close()
		}
	}
	if len(seen) != n {
		t.Fatalf("read %d distinct events back, want %d", len(seen), n)
	}
}

func checkArrowTable(t *testing.T, tbl arrow.Table, start time.Time, seen map[int]bool) {
	t.Helper()
	sc := tbl.Schema()
	wantTypes := map[string]arrow.DataType{
		"ts":         &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"},
		"event_id":   arrow.BinaryTypes.String,
		"user_id":    arrow.BinaryTypes.String,
		"amount":     arrow.PrimitiveTypes.Float64,
		"latency_ms": arrow.PrimitiveTypes.Int64,
		"ok":         arrow.FixedWidthTypes.Boolean,
		"_offset":    arrow.PrimitiveTypes.Int64,
	}
	cols := map[string]arrow.Array{}
	for name, want := range wantTypes {
		idx := sc.FieldIndices(name)
		if len(idx) != 1 {
			t.Fatalf("column %s missing from %v", name, sc)
		}
		if got := sc.Field(idx[0]).Type; !arrow.TypeEqual(got, want) {
			t.Fatalf("column %s has type %s, want %s", name, got, want)
		}
		col := tbl.Column(idx[0])
		if len(col.Data().Chunks()) == 0 {
			continue
		}
		arr, err := array.Concatenate(col.Data().Chunks(), memory.DefaultAllocator)
		if err != nil {
			t.Fatal(err)
		}
		cols[name] = arr
	}
	if len(cols) == 0 {
		return
	}
	ts := cols["ts"].(*array.Timestamp)
	ids := cols["event_id"].(*array.String)
	users := cols["user_id"].(*array.String)
	amounts := cols["amount"].(*array.Float64)
	lat := cols["latency_ms"].(*array.Int64)
	oks := cols["ok"].(*array.Boolean)
	for row := 0; row < ts.Len(); row++ {
		i, err := strconv.Atoi(strings.TrimPrefix(ids.Value(row), "e"))
		if err != nil {
			t.Fatalf("row %d: event_id %q", row, ids.Value(row))
		}
		seen[i] = true
		// goodEvent(i, start+i ms) is what was produced.
		wantTS := start.Add(time.Duration(i) * time.Millisecond)
		if got := ts.Value(row).ToTime(arrow.Microsecond); !got.Equal(wantTS) {
			t.Fatalf("event %d: ts %s, want %s", i, got, wantTS)
		}
		if users.Value(row) != "u"+strconv.Itoa(i%37) || amounts.Value(row) != float64(i%100)+0.5 ||
			lat.Value(row) != int64(i%1000) || !oks.Value(row) {
			t.Fatalf("event %d: got user %q amount %v latency %d ok %v", i, users.Value(row), amounts.Value(row), lat.Value(row), oks.Value(row))
		}
	}
	for _, c := range cols {
		c.Release()
	}
}
