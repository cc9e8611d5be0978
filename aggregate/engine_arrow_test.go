package aggregate_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"

	"github.com/sluicehq/sluice/aggregate"
	"github.com/sluicehq/sluice/aggregate/aggtest"
	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/schema"
)

// makeRecords decodes records with the real decoder into Arrow records of
// perRecord rows each, as a batch run's mapper does.
func makeRecords(tb testing.TB, t *schema.Table, records [][]byte, perRecord int) []arrow.Record {
	tb.Helper()
	dec := schema.NewDecoder(t, schema.WithNow(func() time.Time { return testStart.Add(1000 * time.Hour) }))
	var out []arrow.Record
	for start := 0; start < len(records); start += perRecord {
		b := schema.NewBatch(t, nil)
		for i, rec := range records[start:min(start+perRecord, len(records))] {
			if _, err := dec.Decode(b, rec, schema.Meta{Source: "kafka:events", Partition: "0", Offset: int64(start + i)}); err != nil {
				tb.Fatalf("decode %s: %v", rec, err)
			}
		}
		out = append(out, b.NewRecord())
	}
	return out
}

// Folding decoded Arrow records gives the very summary (byte for byte)
// that folding the same rows written as raw objects gives, and it equals
// the exact recomputation.
func TestAddRecordEqualsAddParquet(t *testing.T) {
	sample, typed := testkit.SampleTable(t), typesTable(t)
	cases := []struct {
		name     string
		table    *schema.Table
		records  [][]byte
		per      int
		window   time.Duration
		from, to time.Time
	}{
		{"sample 1m", sample, genEvents(genConfig{seed: 11, n: 20000, span: 30 * time.Minute, nullShare: 0.05, boundaryShare: 0.1, outsideShare: 0.05}),
			5000, time.Minute, testStart, testStart.Add(30 * time.Minute)},
		{"sample 5m all null countries", sample, genEvents(genConfig{seed: 12, n: 9000, span: 30 * time.Minute, nullShare: 1, users: 3}),
			9000, 5 * time.Minute, testStart.Add(5 * time.Minute), testStart.Add(20 * time.Minute)},
		// Records longer than the fold's internal batch, and a millisecond
		// event time, int64 and bool dimensions, nulls everywhere.
		{"typed 30s", typed, genTyped(15, 20000, 20*time.Minute), 9000, 30 * time.Second, testStart, testStart.Add(20 * time.Minute)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			objs := makeObjects(t, tc.table, tc.records, tc.per)
			viaParquet, _, err := aggregate.AggregateObjects(context.Background(), tc.table, tc.window, tc.from, tc.to, 1, objs)
			if err != nil {
				t.Fatal(err)
			}
			a := aggregate.NewAggregator(tc.table, tc.window, tc.from, tc.to)
			for _, rec := range makeRecords(t, tc.table, tc.records, tc.per) {
				if err := a.AddRecord(rec); err != nil {
					t.Fatal(err)
				}
				rec.Release()
			}
			direct := a.Result()
			if err := a.Err(); err != nil {
				t.Fatal(err)
			}
			if st := a.Stats(); st.Rows != int64(len(tc.records)) || st.Rows-st.OutOfRange != direct.TotalRows() {
				t.Errorf("stats %+v for %d records, %d rows in the summary", st, len(tc.records), direct.TotalRows())
			}
			exact, err := aggtest.ExactRecompute(tc.table, tc.window, tc.from, tc.to, objs...)
			if err != nil {
				t.Fatal(err)
			}
			if err := exact.Check(tc.table, direct); err != nil {
				t.Fatal(err)
			}
			var want, got bytes.Buffer
			if err := aggregate.WriteSummary(&want, tc.table, viaParquet, nil); err != nil {
				t.Fatal(err)
			}
			if err := aggregate.WriteSummary(&got, tc.table, direct, nil); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(want.Bytes(), got.Bytes()) {
				t.Error("the summary of the Arrow records differs from the summary of the same rows as objects")
			}
		})
	}
}

// A record whose column has another type than the field is an error that
// names the column, and the aggregator stays broken.
func TestAddRecordRejectsAnotherType(t *testing.T) {
	tbl := testkit.SampleTable(t)
	recs := makeRecords(t, tbl, genEvents(genConfig{seed: 3, n: 10, span: time.Minute}), 10)
	rec := recs[0]
	defer rec.Release()
	// latency_ms as a string column.
	fields := rec.Schema().Fields()
	cols := rec.Columns()
	li := rec.Schema().FieldIndices("latency_ms")[0]
	fields[li].Type = arrow.BinaryTypes.String
	bld := array.NewStringBuilder(memory.NewGoAllocator())
	for range rec.NumRows() {
		bld.Append("12")
	}
	cols[li] = bld.NewArray()
	bad := array.NewRecord(arrow.NewSchema(fields, nil), cols, rec.NumRows())
	defer bad.Release()
	a := aggregate.NewAggregator(tbl, time.Minute, testStart, testStart.Add(time.Hour))
	err := a.AddRecord(bad)
	if err == nil || !strings.Contains(err.Error(), "latency_ms") {
		t.Fatalf("AddRecord of a string latency_ms: %v", err)
	}
	if a.AddRecord(rec) == nil || a.Err() == nil {
		t.Error("the aggregator took more rows after an error")
	}
}
