package aggregate_test

import (
	"bytes"
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/apache/arrow/go/v15/parquet/file"
	"github.com/apache/arrow/go/v15/parquet/pqarrow"

	"github.com/sluicehq/sluice/aggregate"
	"github.com/sluicehq/sluice/aggregate/aggtest"
	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/schema"
)

func sampleSummary(t *testing.T) (*schema.Table, *aggregate.Summary, [][]byte) {
	t.Helper()
	tbl := testkit.SampleTable(t)
	objs := makeObjects(t, tbl, genEvents(genConfig{seed: 21, n: 8000, span: 10 * time.Minute, nullShare: 0.1}), 2000)
	s, _, err := aggregate.AggregateObjects(context.Background(), tbl, time.Minute, testStart, testStart.Add(10*time.Minute), 2, objs)
	if err != nil {
		t.Fatal(err)
	}
	return tbl, s, objs
}

func TestSummaryRoundTrip(t *testing.T) {
	tbl, s, objs := sampleSummary(t)
	b1 := encode(t, tbl, s)
	if b2 := encode(t, tbl, s); !bytes.Equal(b1, b2) {
		t.Fatal("two writes of one summary differ")
	}
	back, err := aggregate.ReadSummary(bytes.NewReader(b1), int64(len(b1)), tbl)
	if err != nil {
		t.Fatal(err)
	}
	if back.Window != time.Minute || len(back.Rows) != len(s.Rows) || back.TotalRows() != s.TotalRows() {
		t.Fatalf("read back window %s, %d rows (%d input rows); wrote %d (%d)", back.Window, len(back.Rows), back.TotalRows(), len(s.Rows), s.TotalRows())
	}
	if b3 := encode(t, tbl, back); !bytes.Equal(b1, b3) {
		t.Error("read-back summary encodes differently")
	}
	exact, err := aggtest.ExactRecompute(tbl, time.Minute, testStart, testStart.Add(10*time.Minute), objs...)
	if err != nil {
		t.Fatal(err)
	}
	if err := exact.Check(tbl, back); err != nil {
		t.Errorf("read-back summary vs exact:\n%v", err)
	}
	// Reading back keeps the windows; selecting and dropping split them.
	ws := back.Windows()
	if len(ws) != 10 {
		t.Fatalf("%d windows", len(ws))
	}
	sel, drop := back.SelectWindows(ws[:3]), back.DropWindows(ws[:3])
	if len(sel.Rows)+len(drop.Rows) != len(back.Rows) || sel.TotalRows()+drop.TotalRows() != back.TotalRows() || len(sel.Windows()) != 3 {
		t.Errorf("select/drop: %d + %d rows of %d", len(sel.Rows), len(drop.Rows), len(back.Rows))
	}
	joined, err := aggregate.Merge(tbl, time.Minute, drop, sel)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(encode(t, tbl, joined), b1) {
		t.Error("merging the selected and dropped windows back does not give the original")
	}
}

func TestSummaryCheckDetectsChanges(t *testing.T) {
	tbl, s, objs := sampleSummary(t)
	exact, err := aggtest.ExactRecompute(tbl, time.Minute, testStart, testStart.Add(10*time.Minute), objs...)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		change func(r *aggregate.Row)
		want   string
	}{
		{"rows", func(r *aggregate.Row) { r.N++ }, "__rows"},
		{"count", func(r *aggregate.Row) { aggregate.DecrementCount(&r.M[0]) }, "count"},
		{"float sum by one ulp", func(r *aggregate.Row) {
			aggregate.AddToFloatSum(&r.M[1], math.Nextafter(r.M[1].SumFloat(), math.Inf(1))-r.M[1].SumFloat())
		}, "sum"},
		{"max", func(r *aggregate.Row) { aggregate.SetMaxBits(&r.M[3], math.Float64bits(1e9)) }, "min/max"},
		{"distinct", func(r *aggregate.Row) {
			for i := uint64(0); i < 500; i++ {
				r.M[6].HLL().InsertHash(aggregate.HashUint64(i + 1e9))
			}
		}, "distinct"},
		{"quantile", func(r *aggregate.Row) { _ = r.M[5].Sketch().AddWithCount(1e6, float64(r.N)) }, "quantile"},
		{"dimension", func(r *aggregate.Row) { r.Dims[0] = "nope" }, "not in the raw data"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Work on a round-tripped copy so cases do not affect each other.
			c := roundTrip(t, tbl, s)
			big := 0
			for i := range c.Rows {
				if c.Rows[i].N > c.Rows[big].N {
					big = i
				}
			}
			tc.change(&c.Rows[big])
			err := exact.Check(tbl, c)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Check = %v, want a %q mismatch", err, tc.want)
			}
		})
	}
}

// TestSummaryArrowRead reads a summary with Arrow's Parquet reader, as
// DuckDB or pyarrow would, and checks the plain columns' names, types and
// values.
func TestSummaryArrowRead(t *testing.T) {
	tbl, s, _ := sampleSummary(t)
	b := encode(t, tbl, s)
	pf, err := file.NewParquetReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer pf.Close()
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: 1024}, memory.DefaultAllocator)
	if err != nil {
		t.Fatal(err)
	}
	at, err := fr.ReadTable(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer at.Release()
	want := []struct {
		name     string
		typ      arrow.DataType
		nullable bool
	}{
		{"window_start", &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}, false},
		{"window_end", &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}, false},
		{"event_type", arrow.BinaryTypes.String, false},
		{"country", arrow.BinaryTypes.String, true},
		{"__rows", arrow.PrimitiveTypes.Int64, false},
		{"events", arrow.PrimitiveTypes.Int64, false},
		{"amount_sum", arrow.PrimitiveTypes.Float64, true},
		{"amount_sum__xsum", arrow.BinaryTypes.Binary, true},
		{"amount_min", arrow.PrimitiveTypes.Float64, true},
		{"amount_max", arrow.PrimitiveTypes.Float64, true},
		{"amount_avg", arrow.PrimitiveTypes.Float64, true},
		{"amount_avg__sum", arrow.PrimitiveTypes.Float64, true},
		{"amount_avg__count", arrow.PrimitiveTypes.Int64, false},
		{"amount_avg__xsum", arrow.BinaryTypes.Binary, true},
		{"latency_p50", arrow.PrimitiveTypes.Float64, true},
		{"latency_p90", arrow.PrimitiveTypes.Float64, true},
		{"latency_p99", arrow.PrimitiveTypes.Float64, true},
		{"latency__sketch", arrow.BinaryTypes.Binary, true},
		{"users", arrow.PrimitiveTypes.Int64, false},
		{"users__hll", arrow.BinaryTypes.Binary, true},
	}
	sc := at.Schema()
	if sc.NumFields() != len(want) {
		t.Fatalf("%d columns, want %d: %s", sc.NumFields(), len(want), sc)
	}
	for i, w := range want {
		f := sc.Field(i)
		if f.Name != w.name || !arrow.TypeEqual(f.Type, w.typ) || f.Nullable != w.nullable {
			t.Errorf("column %d: %s %s nullable=%v, want %s %s nullable=%v", i, f.Name, f.Type, f.Nullable, w.name, w.typ, w.nullable)
		}
	}
	if at.NumRows() != int64(len(s.Rows)) {
		t.Fatalf("%d rows, want %d", at.NumRows(), len(s.Rows))
	}
	// Values: the plain columns say what the summary rows say, in order.
	starts := at.Column(0).Data().Chunk(0).(*array.Timestamp)
	events := at.Column(5).Data().Chunk(0).(*array.Int64)
	sums := at.Column(6).Data().Chunk(0).(*array.Float64)
	users := at.Column(18).Data().Chunk(0).(*array.Int64)
	var total int64
	for i := range s.Rows {
		r := &s.Rows[i]
		if int64(starts.Value(i)) != r.Start || events.Value(i) != r.M[0].Count() {
			t.Fatalf("row %d: start %d events %d, want %d %d", i, starts.Value(i), events.Value(i), r.Start, r.M[0].Count())
		}
		if sums.Value(i) != r.M[1].SumFloat() || uint64(users.Value(i)) != r.M[6].Distinct() {
			t.Fatalf("row %d: sum %v users %d, want %v %d", i, sums.Value(i), users.Value(i), r.M[1].SumFloat(), r.M[6].Distinct())
		}
		total += events.Value(i)
	}
	if total != s.TotalRows() {
		t.Errorf("events add up to %d, want %d", total, s.TotalRows())
	}
}

func TestSummaryErrors(t *testing.T) {
	tbl := testkit.SampleTable(t)
	typed := typesTable(t)
	noRollup := schema.SampleTables()[0]
	noRollup.Rollup = nil
	_, s, _ := sampleSummary(t)
	good := encode(t, tbl, s)
	cases := []struct {
		name string
		run  func() error
		want string
	}{
		{"write without rollup", func() error { return aggregate.WriteSummary(&bytes.Buffer{}, noRollup, s, nil) }, "table has no rollup"},
		{"write row of another table", func() error { return aggregate.WriteSummary(&bytes.Buffer{}, typed, s, nil) }, "row has 2 dimensions and 7 measures"},
		{"write nil", func() error { return aggregate.WriteSummary(&bytes.Buffer{}, tbl, nil, nil) }, "nil summary"},
		{"read garbage", func() error {
			_, err := aggregate.ReadSummary(bytes.NewReader([]byte("not parquet at all")), 18, tbl)
			return err
		}, "read summary"},
		{"read truncated", func() error {
			_, err := aggregate.ReadSummary(bytes.NewReader(good[:len(good)/2]), int64(len(good)/2), tbl)
			return err
		}, "read summary"},
		{"read with another table", func() error {
			_, err := aggregate.ReadSummary(bytes.NewReader(good), int64(len(good)), typed)
			return err
		}, "column shard is missing"},
		{"merge into finer window", func() error {
			_, err := aggregate.Merge(tbl, 30*time.Second, s)
			return err
		}, "not a multiple"},
		{"merge into 90s", func() error {
			_, err := aggregate.Merge(tbl, 90*time.Second, s)
			return err
		}, "not a multiple"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestEngineBadInput(t *testing.T) {
	tbl := testkit.SampleTable(t)
	objs := makeObjects(t, tbl, genEvents(genConfig{seed: 30, n: 500, span: time.Minute}), 500)
	obj := objs[0]
	// An object of another table: no event_type column.
	typedObj := makeObjects(t, typesTable(t), genTyped(31, 100, time.Minute), 100)[0]
	// The typed table's at column is millis; a table claiming micros must refuse it.
	microsTyped := typesTable(t)
	microsTyped.Fields[0].Unit = schema.UnitMicros
	corrupt := bytes.Clone(obj)
	for i := 100; i < len(corrupt)-200; i += 7 {
		corrupt[i] ^= 0x5a
	}
	cases := []struct {
		name   string
		table  *schema.Table
		window time.Duration
		from   time.Time
		object []byte
		want   string
	}{
		{"garbage", tbl, time.Minute, testStart, []byte("PAR1 nope"), "open object"},
		{"truncated", tbl, time.Minute, testStart, obj[:len(obj)/2], "open object"},
		{"corrupt pages", tbl, time.Minute, testStart, corrupt, "aggregate table events"},
		{"missing column", tbl, time.Minute, testStart, typedObj, "no column ts"},
		{"timestamp unit", microsTyped, time.Minute, testStart, typedObj, "timestamp unit"},
		{"misaligned range", tbl, time.Minute, testStart.Add(time.Second), obj, "not aligned"},
		{"sub-second window", tbl, time.Millisecond, testStart, obj, "whole number of seconds"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := aggregate.NewAggregator(tc.table, tc.window, tc.from, tc.from.Add(time.Hour))
			err := a.AddParquet(bytes.NewReader(tc.object), int64(len(tc.object)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			// The aggregator stays failed, and does not panic on Result.
			if err2 := a.AddParquet(bytes.NewReader(obj), int64(len(obj))); err2 == nil {
				t.Error("a failed aggregator accepted another object")
			}
			_ = a.Result()
			if a.Err() == nil {
				t.Error("Err is nil after a failure")
			}
		})
	}
}
