package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"
)

// FuzzDecode checks that Decode never panics, appends exactly one row or a
// *RecordError, accepts only what encoding/json accepts, and agrees with
// encoding/json on the values of the top-level fields.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"ts":"2026-11-26T10:15:30.123456Z","s":"x","n":87,"f":12.5,"b":true}`,
		`{"ts":"2026-11-26T10:15:30Z","s":"a\"b","n":8.7e1,"f":1e-5,"b":false,"opt":null,"geo":{"city":"c"}}`,
		`{"ts":"2026-11-26T10:15:30Z","s":"x","n":1,"f":1,"b":true,"us":"1764152130123456","sec":-1.5}`,
		`[]`, `{`, `{"a":1}x`, "{\"s\":\"\xff\"}", `{"n":1e999999999999}`,
	} {
		f.Add([]byte(s))
	}
	tbl := testTable(f)
	d := NewDecoder(tbl, WithNow(func() time.Time { return testNow }))
	b := NewBatch(tbl, memory.NewGoAllocator())
	defer b.Release()
	f.Fuzz(func(t *testing.T, value []byte) {
		before := b.Len()
		_, err := d.Decode(b, value, Meta{Source: "s", Partition: "p", Offset: 1})
		if err != nil {
			var re *RecordError
			if !errors.As(err, &re) {
				t.Fatalf("non-RecordError %T: %v", err, err)
			}
			if b.Len() != before {
				t.Fatalf("rejected record appended a row")
			}
			if re.Reason == ReasonMalformedJSON && json.Valid(value) && utf8.Valid(value) && nesting(value) <= maxDepth {
				t.Fatalf("valid JSON rejected as malformed: %v", re)
			}
			return
		}
		if b.Len() != before+1 {
			t.Fatalf("accepted record appended %d rows", b.Len()-before)
		}
		if !json.Valid(value) || !utf8.Valid(value) {
			t.Fatalf("accepted invalid JSON %q", value)
		}
		// Compare the top-level values with encoding/json (duplicate keys:
		// last wins in both).
		var m map[string]any
		dec := json.NewDecoder(bytes.NewReader(value))
		dec.UseNumber()
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("encoding/json: %v", err)
		}
		rec := b.NewRecord()
		defer rec.Release()
		row := int(rec.NumRows()) - 1
		if got, want := rec.Column(1).(*array.String).Value(row), m["s"]; got != want {
			t.Fatalf("s = %q, encoding/json %q", got, want)
		}
		if got, want := rec.Column(4).(*array.Boolean).Value(row), m["b"]; got != want {
			t.Fatalf("b = %v, encoding/json %v", got, want)
		}
		num := m["n"].(json.Number)
		if got := rec.Column(2).(*array.Int64).Value(row); strconv.FormatInt(got, 10) != num.String() {
			// 8.7e1 and 87.0 are valid spellings of 87: compare as floats.
			if fl, err := num.Float64(); err != nil || fl != float64(got) {
				t.Fatalf("n = %d, encoding/json %s", got, num)
			}
		}
		fnum := m["f"].(json.Number)
		if want, err := fnum.Float64(); err != nil || rec.Column(3).(*array.Float64).Value(row) != want {
			t.Fatalf("f = %v, encoding/json %s", rec.Column(3).(*array.Float64).Value(row), fnum)
		}
		if opt, ok := m["opt"].(string); ok && rec.Column(5).(*array.String).Value(row) != opt {
			t.Fatalf("opt = %q, encoding/json %q", rec.Column(5).(*array.String).Value(row), opt)
		}
	})
}

// nesting is the deepest bracket nesting outside strings (valid JSON only).
func nesting(v []byte) int {
	depth, deepest, inStr, esc := 0, 0, false, false
	for _, c := range v {
		switch {
		case inStr && esc:
			esc = false
		case inStr && c == '\\':
			esc = true
		case c == '"':
			inStr = !inStr
		case !inStr && (c == '{' || c == '['):
			depth++
			deepest = max(deepest, depth)
		case !inStr && (c == '}' || c == ']'):
			depth--
		}
	}
	return deepest
}

// FuzzParse checks that Parse never panics and that whatever it accepts
// yields schemas and a decoder.
func FuzzParse(f *testing.F) {
	f.Add(SampleYAML)
	f.Add([]byte(testTableYAML))
	f.Fuzz(func(t *testing.T, data []byte) {
		tables, err := Parse(data, "fuzz.yaml")
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		for _, tbl := range tables {
			if err := tbl.Validate(); err != nil {
				t.Fatalf("accepted table fails Validate: %v", err)
			}
			if tbl.ArrowSchema().NumFields() != len(tbl.Fields)+3 || len(tbl.ParquetSchema().Fields()) != len(tbl.Fields)+3 {
				t.Fatal("schema column count")
			}
			b := NewBatch(tbl, nil)
			_, _ = NewDecoder(tbl).Decode(b, []byte(`{"a":{"b":1}}`), Meta{})
			b.Release()
		}
	})
}
