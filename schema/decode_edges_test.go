package schema

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow/memory"
)

// TestDecodeAtTheLimits: the size limit and the earliest event time are
// inclusive. A record of exactly max_record_bytes, and an event time of
// exactly 2000-01-01T00:00:00Z, are accepted; one byte or microsecond
// past them is not.
func TestDecodeAtTheLimits(t *testing.T) {
	tbl := testTable(t)
	d := NewDecoder(tbl, WithNow(func() time.Time { return testNow }))
	pad := func(rec string, size int) string {
		// {"ts":...,"pad":"aaa"}: grow the ignored pad to reach size bytes.
		base := rec + `,"pad":""}`
		return rec + `,"pad":"` + strings.Repeat("a", size-len(base)) + `"}`
	}
	for _, tc := range []struct {
		name   string
		in     string
		reason Reason // "" for accepted
	}{
		{"exactly max_record_bytes", pad(okPrefix, tbl.MaxRecordBytes), ""},
		{"one byte more", pad(okPrefix, tbl.MaxRecordBytes+1), ReasonTooLarge},
		{"event time exactly 2000-01-01", `{"ts":"2000-01-01T00:00:00Z","s":"x","n":1,"f":1,"b":true}`, ""},
		{"event time 1µs before 2000", `{"ts":"1999-12-31T23:59:59.999999Z","s":"x","n":1,"f":1,"b":true}`, ReasonAbsurdEventTime},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := NewBatch(tbl, memory.NewGoAllocator())
			defer b.Release()
			_, err := d.Decode(b, []byte(tc.in), Meta{Source: "s", Partition: "0"})
			var re *RecordError
			switch {
			case tc.reason == "" && err != nil:
				t.Fatalf("%d-byte record: %v, want it accepted", len(tc.in), err)
			case tc.reason != "" && (!errors.As(err, &re) || re.Reason != tc.reason):
				t.Fatalf("%d-byte record: %v, want %s", len(tc.in), err, tc.reason)
			}
		})
	}
}

// TestRecordErrorText: the text written next to a dead letter names the
// field when there is one, and tells a null required field from an absent
// one.
func TestRecordErrorText(t *testing.T) {
	tbl := testTable(t)
	d := NewDecoder(tbl, WithNow(func() time.Time { return testNow }))
	for _, tc := range []struct{ in, want string }{
		{`{"ts":"2026-11-26T10:15:30Z","s":"x","n":1,"f":1}`, `missing_field: field "b": required field is absent`},
		{`{"ts":"2026-11-26T10:15:30Z","s":"x","n":1,"f":1,"b":null}`, `missing_field: field "b": required field is null`},
		{`[1]`, `not_object: top-level value is an array, want an object`},
	} {
		b := NewBatch(tbl, memory.NewGoAllocator())
		_, err := d.Decode(b, []byte(tc.in), Meta{})
		b.Release()
		if err == nil || err.Error() != tc.want {
			t.Errorf("Decode(%s) = %v, want %q", tc.in, err, tc.want)
		}
	}
}

// TestDecodeIntoBatchOfAnotherTable: a decoder may fill a batch built for
// another table of the same shape (a table reloaded from its file), never
// one of a different shape.
func TestDecodeIntoBatchOfAnotherTable(t *testing.T) {
	tbl := testTable(t)
	d := NewDecoder(tbl, WithNow(func() time.Time { return testNow }))
	rec := []byte(okPrefix + `}`)
	same := testTable(t)
	b := NewBatch(same, memory.NewGoAllocator())
	defer b.Release()
	if _, err := d.Decode(b, rec, Meta{}); err != nil || b.Len() != 1 {
		t.Fatalf("batch of an equal table: %v, %d rows", err, b.Len())
	}
	other := SampleTables()[0]
	ob := NewBatch(other, memory.NewGoAllocator())
	defer ob.Release()
	if _, err := d.Decode(ob, rec, Meta{}); err == nil || ob.Len() != 0 {
		t.Fatalf("batch of table %s: %v, %d rows; want an error", other.Name, err, ob.Len())
	}
	// Same field count, one nullability different.
	changed := testTable(t)
	changed.Fields[1].Nullable = true
	cb := NewBatch(changed, memory.NewGoAllocator())
	defer cb.Release()
	if _, err := d.Decode(cb, rec, Meta{}); err == nil {
		t.Fatal("batch of a table with another nullability accepted")
	}
}

// skipPlain, which looks at eight bytes at a time, stops exactly where the
// byte-wise class table finds the first byte that is not plain, for every
// byte value in every lane, among plain bytes of several kinds.
func TestSkipPlainStopsAtTheFirstSpecialByte(t *testing.T) {
	firstSpecial := func(data []byte) int {
		for i, c := range data {
			if strClass[c] != chPlain {
				return i
			}
		}
		return len(data)
	}
	for _, fill := range []byte{'a', 0x7f, ' ', '!', 0x21} {
		for v := range 256 {
			for at := range 24 {
				data := bytes.Repeat([]byte{fill}, 24)
				data[at] = byte(v)
				want := firstSpecial(data)
				got := skipPlain(data, 0)
				if got > want || (got < want && got+8 <= len(data)) {
					t.Fatalf("fill %#x, byte %#x at %d: skipPlain stops at %d, the first special byte is at %d", fill, v, at, got, want)
				}
			}
		}
	}
}
