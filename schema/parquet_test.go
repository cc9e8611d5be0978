package schema

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"
	pqbase "github.com/apache/arrow/go/v15/parquet"
	"github.com/apache/arrow/go/v15/parquet/file"
	"github.com/apache/arrow/go/v15/parquet/metadata"
	"github.com/apache/arrow/go/v15/parquet/pqarrow"
	pqschema "github.com/apache/arrow/go/v15/parquet/schema"
)

// randomTestRecords decodes n random records of the test table, with nulls
// in every nullable column and repeating as well as unique strings.
func randomTestRecord(t testing.TB, mem memory.Allocator, n int, seed uint64) arrow.Record {
	t.Helper()
	tbl := testTable(t)
	r := rand.New(rand.NewPCG(seed, 99))
	d := NewDecoder(tbl, WithNow(func() time.Time { return testNow }))
	b := NewBatch(tbl, mem)
	defer b.Release()
	base := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	opt := func(v string) string {
		if r.IntN(3) == 0 {
			return "null"
		}
		return v
	}
	for i := 0; i < n; i++ {
		ts := base.Add(time.Duration(r.Int64N(int64(6 * 24 * time.Hour)))).Truncate(time.Microsecond)
		geo := ""
		switch r.IntN(3) {
		case 0:
			geo = `,"geo":null`
		case 1:
			geo = fmt.Sprintf(`,"geo":{"city":%s,"zip":%s}`, opt(strconv.Quote([]string{"Berlin", "Köln", "Paris"}[r.IntN(3)])), opt(strconv.Itoa(r.IntN(99999))))
		}
		rec := fmt.Sprintf(`{"ts":%q,"s":"id-%d-%x","n":%d,"f":%g,"b":%t,"opt":%s%s,"us":%s,"ms":%s,"sec":%s,"day":%s}`,
			ts.Format(time.RFC3339Nano), i, r.Uint64(), r.Int64()-r.Int64(), r.NormFloat64()*1e6, r.IntN(2) == 0,
			opt(strconv.Quote([]string{"", "a", "bb", "ccc"}[r.IntN(4)])), geo,
			opt(strconv.FormatInt(ts.UnixMicro(), 10)), opt(strconv.FormatInt(ts.UnixMilli(), 10)), opt(strconv.FormatInt(ts.Unix(), 10)),
			opt(strconv.Quote(ts.Format("2006-01-02 15:04"))))
		if _, err := d.Decode(b, []byte(rec), Meta{Source: "kafka:t", Partition: strconv.Itoa(int(seed)), Offset: int64(1000 + i)}); err != nil {
			t.Fatalf("record %d %s: %v", i, rec, err)
		}
	}
	return b.NewRecord()
}

func TestWriteParquetRoundTripArrowReader(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	tbl := testTable(t)
	rec := randomTestRecord(t, mem, 5000, 1)
	defer rec.Release()
	every3 := []int{}
	for i := 0; i < int(rec.NumRows()); i += 3 {
		every3 = append(every3, i)
	}
	cases := []struct {
		name string
		rows []int
		opts WriterOptions
	}{
		{"all rows zstd", nil, WriterOptions{}},
		{"all rows snappy small row groups and pages", nil, WriterOptions{Compression: "snappy", RowGroupRows: 1200, PageBufferBytes: 4096}},
		{"every third row uncompressed", every3, WriterOptions{Compression: "none", RowGroupRows: 700}},
		{"no rows", []int{}, WriterOptions{}},
		{"one row", []int{4999}, WriterOptions{KeyValueMetadata: map[string]string{"sluice.first_offset": "5999"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			n, err := WriteParquet(&buf, tbl, rec, tc.rows, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if n != int64(buf.Len()) {
				t.Fatalf("returned %d bytes, wrote %d", n, buf.Len())
			}
			want := tc.rows
			if want == nil {
				want = make([]int, rec.NumRows())
				for i := range want {
					want[i] = i
				}
			}
			checkParquetFile(t, tbl, rec, want, buf.Bytes(), tc.opts)
		})
	}
}

func checkParquetFile(t *testing.T, tbl *Table, rec arrow.Record, rows []int, data []byte, opts WriterOptions) {
	t.Helper()
	pr, err := file.NewParquetReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	md := pr.MetaData()
	if md.NumRows != int64(len(rows)) {
		t.Fatalf("file has %d rows, want %d", md.NumRows, len(rows))
	}
	for k, v := range opts.KeyValueMetadata {
		if got := md.KeyValueMetadata().FindValue(k); got == nil || *got != v {
			t.Errorf("key-value metadata %s = %v, want %s", k, got, v)
		}
	}
	if opts.RowGroupRows > 0 && len(rows) > 0 {
		if want := (len(rows) + opts.RowGroupRows - 1) / opts.RowGroupRows; len(md.RowGroups) != want {
			t.Errorf("%d row groups, want %d", len(md.RowGroups), want)
		}
	}
	// Parquet schema as Arrow's reader sees it.
	as := tbl.ArrowSchema()
	if md.Schema.NumColumns() != as.NumFields() {
		t.Fatalf("%d parquet columns, want %d", md.Schema.NumColumns(), as.NumFields())
	}
	for i := 0; i < as.NumFields(); i++ {
		col := md.Schema.Column(i)
		f := as.Field(i)
		if col.Name() != f.Name {
			t.Errorf("column %d is %s, want %s", i, col.Name(), f.Name)
		}
		wantRep := pqbase.Repetitions.Required
		if f.Nullable {
			wantRep = pqbase.Repetitions.Optional
		}
		if col.SchemaNode().RepetitionType() != wantRep {
			t.Errorf("%s: repetition %s, want %s", f.Name, col.SchemaNode().RepetitionType(), wantRep)
		}
		if tt, ok := f.Type.(*arrow.TimestampType); ok {
			lt, ok := col.LogicalType().(*pqschema.TimestampLogicalType)
			if !ok {
				t.Fatalf("%s: logical type %s, want timestamp", f.Name, col.LogicalType())
			}
			want := pqschema.TimeUnitMicros
			if tt.Unit == arrow.Millisecond {
				want = pqschema.TimeUnitMillis
			}
			if lt.TimeUnit() != want || !lt.IsAdjustedToUTC() {
				t.Errorf("%s: %s, want unit %v adjusted to UTC", f.Name, lt, want)
			}
		}
		if f.Type.ID() == arrow.STRING {
			if _, ok := col.LogicalType().(pqschema.StringLogicalType); !ok {
				t.Errorf("%s: logical type %s, want String", f.Name, col.LogicalType())
			}
		}
	}
	// Min/max statistics in every column chunk with values, so readers can prune.
	for g := 0; g < len(md.RowGroups); g++ {
		rg := md.RowGroup(g)
		for c := 0; c < rg.NumColumns(); c++ {
			cc, err := rg.ColumnChunk(c)
			if err != nil {
				t.Fatal(err)
			}
			stats, err := cc.Statistics()
			if err != nil || stats == nil {
				t.Fatalf("row group %d column %d: no statistics (%v)", g, c, err)
			}
			if stats.NumValues() > 0 && !stats.HasMinMax() {
				t.Errorf("row group %d column %s: no min/max", g, as.Field(c).Name)
			}
			if is, ok := stats.(*metadata.Int64Statistics); ok && as.Field(c).Name == ColOffset && stats.HasMinMax() {
				if is.Min() < 1000 || is.Max() > 1000+rec.NumRows() || is.Min() > is.Max() {
					t.Errorf("_offset stats %d..%d", is.Min(), is.Max())
				}
			}
		}
	}
	// Values, through Arrow's own Parquet reader.
	fr, err := pqarrow.NewFileReader(pr, pqarrow.ArrowReadProperties{BatchSize: 1000}, memory.DefaultAllocator)
	if err != nil {
		t.Fatal(err)
	}
	got, err := fr.ReadTable(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer got.Release()
	if got.NumCols() != int64(as.NumFields()) || got.NumRows() != int64(len(rows)) {
		t.Fatalf("read %d cols %d rows", got.NumCols(), got.NumRows())
	}
	for c := 0; c < as.NumFields(); c++ {
		gf := got.Schema().Field(c)
		if gf.Name != as.Field(c).Name || !arrow.TypeEqual(gf.Type, as.Field(c).Type) || gf.Nullable != as.Field(c).Nullable {
			t.Errorf("read field %d: %s %s nullable=%v, want %s %s nullable=%v", c, gf.Name, gf.Type, gf.Nullable,
				as.Field(c).Name, as.Field(c).Type, as.Field(c).Nullable)
			continue
		}
		chunks := got.Column(c).Data().Chunks()
		if len(rows) == 0 {
			continue
		}
		gotArr, err := array.Concatenate(chunks, memory.DefaultAllocator)
		if err != nil {
			t.Fatal(err)
		}
		src := rec.Column(c)
		for k, i := range rows {
			if gotArr.IsNull(k) != src.IsNull(i) || gotArr.ValueStr(k) != src.ValueStr(i) {
				t.Fatalf("column %s row %d: got %s (null %v), want %s (null %v)", gf.Name, k,
					gotArr.ValueStr(k), gotArr.IsNull(k), src.ValueStr(i), src.IsNull(i))
			}
		}
		gotArr.Release()
	}
}

func TestWriteParquetRejects(t *testing.T) {
	tbl := testTable(t)
	rec := randomTestRecord(t, memory.DefaultAllocator, 10, 2)
	defer rec.Release()
	other := SampleTables()[0]
	cases := []struct {
		name string
		tbl  *Table
		rec  arrow.Record
		rows []int
		opts WriterOptions
	}{
		{"unknown compression", tbl, rec, nil, WriterOptions{Compression: "lzo"}},
		{"row out of range", tbl, rec, []int{0, 10}, WriterOptions{}},
		{"negative row", tbl, rec, []int{-1}, WriterOptions{}},
		{"rows not ascending", tbl, rec, []int{3, 3}, WriterOptions{}},
		{"record of another table", other, rec, nil, WriterOptions{}},
		{"nil record", tbl, nil, nil, WriterOptions{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if _, err := WriteParquet(&buf, tc.tbl, tc.rec, tc.rows, tc.opts); err == nil {
				t.Fatal("no error")
			}
		})
	}
}

// TestWriteParquetEncodings checks the per-file dictionary choice: repeating
// strings dictionary-encoded, unique ones plain.
func TestWriteParquetEncodings(t *testing.T) {
	tbl, rec := benchRecord(t, 20000)
	defer rec.Release()
	var buf bytes.Buffer
	if _, err := WriteParquet(&buf, tbl, rec, nil, WriterOptions{}); err != nil {
		t.Fatal(err)
	}
	pr, err := file.NewParquetReader(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	rg := pr.MetaData().RowGroup(0)
	dict := map[string]bool{}
	for c := 0; c < rg.NumColumns(); c++ {
		cc, _ := rg.ColumnChunk(c)
		dict[pr.MetaData().Schema.Column(c).Name()] = cc.HasDictionaryPage()
	}
	for col, want := range map[string]bool{"event_id": false, "user_id": false, "event_type": true, "country": true, "device": true, ColSource: true, ColPartition: true} {
		if dict[col] != want {
			t.Errorf("%s: dictionary %v, want %v", col, dict[col], want)
		}
	}
	if perRow := float64(buf.Len()) / 20000; perRow > 40 {
		t.Errorf("%.1f bytes/row, want <= 40", perRow)
	}
}

// A batch that fills buffers given back by RecycleRecord yields the same
// records as a fresh batch: nothing of the rows that were in them before
// shows through, whether the next batch is smaller or larger.
func TestRecycledBuffersHoldOnlyTheNewRows(t *testing.T) {
	tbl := SampleTables()[0]
	mem := memory.NewGoAllocator()
	decode := func(b *Batch, events [][]byte) arrow.Record {
		d := NewDecoder(tbl, WithNow(fixedNow))
		for i, e := range events {
			if _, err := d.Decode(b, e, Meta{Source: "kafka:events", Partition: "3", Offset: int64(i)}); err != nil {
				t.Fatal(err)
			}
		}
		return b.NewRecord()
	}
	recycling := NewBatch(tbl, mem)
	defer recycling.Release()
	for round, n := range []int{3000, 500, 5000, 1, 4000} {
		events := sampleEvents(n, uint64(round))
		fresh := NewBatch(tbl, mem)
		want := decode(fresh, events)
		fresh.Release()
		got := decode(recycling, events)
		if !array.RecordEqual(got, want) {
			t.Fatalf("round %d (%d rows): the record from recycled buffers differs from a fresh one", round, n)
		}
		want.Release()
		RecycleRecord(got)
	}
}
