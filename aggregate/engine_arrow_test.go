package aggregate_test

import (
	"bytes"
	"context"
	"strconv"
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

// MergeOwned, which takes the parts' rows over, gives the summary Merge
// gives (byte for byte) and the direct aggregation of all the rows, with
// groups found in one part and in several, sparse and dense distinct-count
// sketches.
func TestMergeOwnedEqualsMerge(t *testing.T) {
	cases := []struct {
		name    string
		table   *schema.Table
		records [][]byte
		window  time.Duration
		span    time.Duration
		dense   bool // some distinct-count sketch is dense, not sparse
	}{
		{"sample 1m", testkit.SampleTable(t), genEvents(genConfig{seed: 21, n: 30000, span: 90 * time.Minute, nullShare: 0.1, boundaryShare: 0.1}), time.Minute, 90 * time.Minute, false},
		{"typed 10m dense sketches", typesTable(t), genTyped(22, 40000, 20*time.Minute), 10 * time.Minute, 20 * time.Minute, true},
		{"typed 30s", typesTable(t), genTyped(23, 20000, 40*time.Minute), 30 * time.Second, 40 * time.Minute, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			objs := makeObjects(t, tc.table, tc.records, 4000)
			from, to := testStart, testStart.Add(tc.span)
			// One part per object: the records are in random time order,
			// so most groups are in several parts.
			parts := func() []*aggregate.Summary {
				var out []*aggregate.Summary
				for _, o := range objs {
					s, _, err := aggregate.AggregateObjects(context.Background(), tc.table, tc.window, from, to, 1, [][]byte{o})
					if err != nil {
						t.Fatal(err)
					}
					out = append(out, s)
				}
				// And a part whose groups are in no other part.
				s, _, err := aggregate.AggregateObjects(context.Background(), tc.table, tc.window, to, to.Add(tc.window*3), 1, makeObjects(t, tc.table, shiftRecords(tc.records[:500], tc.span), 500))
				if err != nil {
					t.Fatal(err)
				}
				return append(out, s)
			}
			copied, err := aggregate.Merge(tc.table, tc.window, parts()...)
			if err != nil {
				t.Fatal(err)
			}
			owned, err := aggregate.MergeOwned(tc.table, tc.window, parts()...)
			if err != nil {
				t.Fatal(err)
			}
			if owned.TotalRows() != copied.TotalRows() || len(owned.Rows) != len(copied.Rows) {
				t.Fatalf("owned merge: %d groups of %d rows, copying merge %d of %d", len(owned.Rows), owned.TotalRows(), len(copied.Rows), copied.TotalRows())
			}
			if tc.dense && !hasDenseHLL(owned) {
				t.Fatal("no distinct-count sketch is dense: the case tests nothing dense")
			}
			if !bytes.Equal(encode(t, tc.table, owned), encode(t, tc.table, copied)) {
				t.Error("MergeOwned's summary differs from Merge's")
			}
			direct, _, err := aggregate.AggregateObjects(context.Background(), tc.table, tc.window, from, to, 2, objs)
			if err != nil {
				t.Fatal(err)
			}
			inRange := &aggregate.Summary{Window: owned.Window}
			for _, r := range owned.Rows {
				if r.Start < to.UnixMicro() {
					inRange.Rows = append(inRange.Rows, r)
				}
			}
			if !bytes.Equal(encode(t, tc.table, inRange), encode(t, tc.table, direct)) {
				t.Error("MergeOwned's summary differs from the direct aggregation")
			}
		})
	}
}

// shiftRecords moves the records' "ts" or "at" times by d: a part of
// groups no other part has.
func shiftRecords(records [][]byte, d time.Duration) [][]byte {
	var out [][]byte
	for _, r := range records {
		s := string(r)
		if i := strings.Index(s, `"ts":"`); i >= 0 {
			ts, err := time.Parse("2006-01-02T15:04:05.000000Z", s[i+6:i+6+27])
			if err == nil {
				s = s[:i+6] + ts.Add(d).UTC().Format("2006-01-02T15:04:05.000000Z") + s[i+6+27:]
			}
		} else if rest, ok := strings.CutPrefix(s, `{"at":`); ok {
			end := strings.IndexByte(rest, ',')
			if ms, err := strconv.ParseInt(rest[:end], 10, 64); err == nil {
				s = `{"at":` + strconv.FormatInt(ms+d.Milliseconds(), 10) + rest[end:]
			}
		}
		out = append(out, []byte(s))
	}
	return out
}

// hasDenseHLL reports whether a distinct-count sketch of s encodes its
// registers (a byte each, 2^precision of them) rather than a short sparse
// list.
func hasDenseHLL(s *aggregate.Summary) bool {
	for _, r := range s.Rows {
		for _, m := range r.M {
			if sk := m.HLL(); sk != nil {
				if b, err := sk.MarshalBinary(); err == nil && len(b) > 1<<b[1] { // b[1] is the precision
					return true
				}
			}
		}
	}
	return false
}
