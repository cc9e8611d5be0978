package schema

import (
	"fmt"
	"testing"

	"github.com/apache/arrow/go/v15/arrow/array"
)

// A projected batch carries exactly the named columns, each equal to the
// same column of a full batch fed the same records, and refuses the records
// the full batch refuses: projection saves copying, never validation.
func TestProjectedBatchKeepsTheNamedColumnsAndStillValidatesWholeRecords(t *testing.T) {
	tbl := SampleTables()[0]
	full, proj := NewBatch(tbl, nil), NewBatch(tbl, nil)
	want := []string{"ts", "user_id", "country", "amount", "_offset"}
	// Asked in another order than the table's: records follow the table.
	if err := proj.Project("amount", "_offset", "country", "user_id", "ts"); err != nil {
		t.Fatal(err)
	}
	dec := NewDecoder(tbl)
	records := []string{
		`{"ts":"2026-03-01T10:00:00Z","event_id":"e1","user_id":"u1","event_type":"view","country":"NL","device":"ios","amount":1.5,"latency_ms":12,"ok":true}`,
		`{"ts":"2026-03-01T10:00:01Z","event_id":"e2","user_id":"u2","event_type":"buy","country":null,"amount":2,"latency_ms":7,"ok":false}`,
		// Bad in columns the projection drops: both batches must refuse them.
		`{"ts":"2026-03-01T10:00:02Z","user_id":"u3","event_type":"view","country":"DE","amount":3,"latency_ms":1,"ok":true}`,
		`{"ts":"2026-03-01T10:00:03Z","event_id":"e4","user_id":"u4","event_type":"view","country":"DE","amount":3,"latency_ms":1,"ok":"yes"}`,
		`{"ts":"2026-03-01T10:00:04Z","event_id":"e5","user_id":"u5","event_type":"view","country":"FR","device":null,"amount":-4.25,"latency_ms":99,"ok":true}`,
	}
	for i, r := range records {
		meta := Meta{Source: "batch", Partition: "p", Offset: int64(i)}
		_, errFull := dec.Decode(full, []byte(r), meta)
		_, errProj := dec.Decode(proj, []byte(r), meta)
		if (errFull == nil) != (errProj == nil) || (errFull != nil && errFull.Error() != errProj.Error()) {
			t.Errorf("record %d: full batch says %v, projected batch %v", i, errFull, errProj)
		}
	}
	if full.Len() != 3 || proj.Len() != 3 {
		t.Fatalf("rows: full %d, projected %d; want 3 each", full.Len(), proj.Len())
	}
	// What projection is for: the dropped columns copy nothing.
	for i := range proj.cols {
		if c := &proj.cols[i]; !proj.keep[i] && (len(c.data) > 0 || len(c.offs) > 1 || len(c.i64) > 0 || len(c.f64) > 0 || len(c.bits) > 0 || len(c.valid) > 0) {
			t.Errorf("column %s is not projected but holds values", full.schema.Field(i).Name)
		}
	}
	for round := range 2 { // the second round fills buffers the first recycled
		fr, pr := full.NewRecord(), proj.NewRecord()
		if got := pr.Schema().NumFields(); got != len(want) {
			t.Fatalf("round %d: projected record has %d columns, want %v", round, got, want)
		}
		for i, name := range want {
			if got := pr.ColumnName(i); got != name {
				t.Fatalf("round %d: column %d is %s, want %s", round, i, got, name)
			}
			fi := fr.Schema().FieldIndices(name)[0]
			if !array.Equal(pr.Column(i), fr.Column(fi)) {
				t.Errorf("round %d: column %s: projected %v, full %v", round, name, pr.Column(i), fr.Column(fi))
			}
			if !pr.Schema().Field(i).Equal(fr.Schema().Field(fi)) {
				t.Errorf("round %d: field %s: projected %v, full %v", round, name, pr.Schema().Field(i), fr.Schema().Field(fi))
			}
		}
		fr.Release()
		RecycleRecord(pr)
		for i := range 4 {
			r := fmt.Sprintf(`{"ts":"2026-03-01T11:00:0%dZ","event_id":"x","user_id":"user-%d","event_type":"view","country":"SE","amount":%d,"latency_ms":3,"ok":true}`, i, i, i)
			for _, b := range []*Batch{full, proj} {
				if _, err := dec.Decode(b, []byte(r), Meta{Offset: int64(i)}); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

func TestProjectRefusesUnknownColumnsAndAFilledBatch(t *testing.T) {
	tbl := SampleTables()[0]
	b := NewBatch(tbl, nil)
	if err := b.Project("ts", "no_such_field"); err == nil {
		t.Error("Project accepted a column the table does not have")
	}
	if _, err := NewDecoder(tbl).Decode(b, []byte(`{"ts":"2026-03-01T10:00:00Z","event_id":"e1","user_id":"u1","event_type":"view","amount":1,"latency_ms":1,"ok":true}`), Meta{}); err != nil {
		t.Fatal(err)
	}
	if err := b.Project("ts"); err == nil {
		t.Error("Project accepted a batch that already holds rows")
	}
}
