package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"
)

// FuzzDecode checks that Decode never panics, appends exactly one row or a
// *RecordError, accepts only what encoding/json accepts, and agrees with
// encoding/json (and, for times, the time package and exact rational
// arithmetic) on the values of every field: the top-level ones, the event
// time, the nested geo.city and geo.zip, the Unix timestamps in seconds,
// milliseconds and microseconds (numbers or numeric strings) and the
// timestamp in a Go layout.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"ts":"2026-11-26T10:15:30.123456Z","s":"x","n":87,"f":12.5,"b":true}`,
		`{"ts":"2026-11-26T10:15:30Z","s":"a\"b","n":8.7e1,"f":1e-5,"b":false,"opt":null,"geo":{"city":"c"}}`,
		`{"ts":"2026-11-26T10:15:30Z","s":"x","n":1,"f":1,"b":true,"us":"1764152130123456","sec":-1.5}`,
		`{"ts":"2026-11-26T11:15:30.1234569+01:00","s":"x","n":1,"f":1,"b":true,"geo":{"city":"B","zip":1.0115e4},"ms":"-1.5","us":-0.5,"day":"2026-11-26 10:15"}`,
		`{"ts":"2026-11-26T10:15:30Z","s":"x","n":1,"f":1,"b":true,"geo":{"zip":1},"geo":null,"sec":"1795688130.0000005","ms":1e3}`,
		`{"ts":"2026-11-26T10:15:30Z","s":"x","n":1,"f":1,"b":true,"sec":9223372036854.775807,"us":-9223372036854775808}`,
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
		et, err := d.Decode(b, value, Meta{Source: "s", Partition: "p", Offset: 1})
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
			if (re.Reason == ReasonBadEventTime || re.Reason == ReasonAbsurdEventTime) && re.Field != "ts" {
				t.Fatalf("%s for field %q, not the event time", re.Reason, re.Field)
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

		// The event time: what the time package reads, inside the bounds.
		tsText, ok := m["ts"].(string)
		if !ok {
			t.Fatalf("accepted an event time that is not a string: %v", m["ts"])
		}
		want, perr := time.Parse(time.RFC3339Nano, tsText)
		if perr != nil {
			t.Fatalf("accepted event time %q that the time package rejects: %v", tsText, perr)
		}
		if got := int64(rec.Column(0).(*array.Timestamp).Value(row)); got != want.UnixMicro() || et != got {
			t.Fatalf("ts %q = %d (returned %d), time package %d", tsText, got, et, want.UnixMicro())
		}
		if et < minEventMicros || et > testNow.Add(time.Hour).UnixMicro() {
			t.Fatalf("accepted event time %q outside [2000, now+max_future]", tsText)
		}

		// Nested: geo.city and geo.zip, NULL when geo or the key is absent or null.
		var geo map[string]any
		switch g := m["geo"].(type) {
		case nil:
		case map[string]any:
			geo = g
		default:
			t.Fatalf("accepted geo that is not an object: %v", g)
		}
		city := rec.Column(6).(*array.String)
		switch c := geo["city"].(type) {
		case nil:
			if !city.IsNull(row) {
				t.Fatalf("geo.city = %q, encoding/json has none", city.Value(row))
			}
		case string:
			if city.IsNull(row) || city.Value(row) != c {
				t.Fatalf("geo.city = %q (null %v), encoding/json %q", city.Value(row), city.IsNull(row), c)
			}
		default:
			t.Fatalf("accepted geo.city %v", c)
		}
		zip := rec.Column(7).(*array.Int64)
		if z, ok := geo["zip"].(json.Number); ok {
			if fl, err := z.Float64(); zip.IsNull(row) || err != nil || fl != float64(zip.Value(row)) {
				t.Fatalf("geo.zip = %d (null %v), encoding/json %s", zip.Value(row), zip.IsNull(row), z)
			}
		} else if !zip.IsNull(row) {
			t.Fatalf("geo.zip = %d, encoding/json %v", zip.Value(row), geo["zip"])
		}

		// Unix timestamps, from numbers or numeric strings: floor(value x
		// 10^scale) microseconds, stored as micros or floored to millis.
		for _, u := range []struct {
			key    string
			col    int
			scale  int64 // decimal digits to micros
			millis bool  // stored in milliseconds
		}{{"us", 8, 0, false}, {"ms", 9, 3, true}, {"sec", 10, 6, false}} {
			arr := rec.Column(u.col).(*array.Timestamp)
			var text string
			switch v := m[u.key].(type) {
			case nil:
				if !arr.IsNull(row) {
					t.Fatalf("%s = %d, encoding/json has none", u.key, arr.Value(row))
				}
				continue
			case json.Number:
				text = v.String()
			case string:
				text = v
			default:
				t.Fatalf("accepted %s = %v", u.key, v)
			}
			want, ok := unixMicros(text, u.scale)
			if !ok {
				continue // an exponent too large to check exactly
			}
			if u.millis {
				want.Div(want, big.NewInt(1000)) // Euclidean: floors
			}
			if arr.IsNull(row) || !want.IsInt64() || int64(arr.Value(row)) != want.Int64() {
				t.Fatalf("%s %q = %d (null %v), want %s", u.key, text, arr.Value(row), arr.IsNull(row), want)
			}
		}

		// The Go layout "2006-01-02 15:04", in UTC.
		day := rec.Column(11).(*array.Timestamp)
		if s, ok := m["day"].(string); ok {
			want, err := time.Parse("2006-01-02 15:04", s)
			if err != nil || day.IsNull(row) || int64(day.Value(row)) != want.UnixMicro() {
				t.Fatalf("day %q = %d (null %v), time package %v (%v)", s, day.Value(row), day.IsNull(row), want, err)
			}
		} else if m["day"] != nil || !day.IsNull(row) {
			t.Fatalf("day = %d (null %v), encoding/json %v", day.Value(row), day.IsNull(row), m["day"])
		}
	})
}

// unixMicros is floor(x * 10^scale) for the JSON number text x, computed
// exactly; ok is false when the exponent is too large to compute cheaply.
func unixMicros(text string, scale int64) (*big.Int, bool) {
	if i := strings.IndexAny(text, "eE"); i >= 0 {
		e, err := strconv.Atoi(text[i+1:])
		if err != nil || e > 400 || e < -400 {
			return nil, false
		}
	}
	r, ok := new(big.Rat).SetString(text)
	if !ok {
		return nil, false
	}
	r.Mul(r, new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(scale), nil)))
	return new(big.Int).Div(r.Num(), r.Denom()), true
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

// FuzzParse checks that Parse never panics, and that whatever it accepts
// survives a round trip (Marshal, then Parse again: the same tables, and
// the same text when marshalled again), yields schemas with a column per
// field, and decodes a record that sets every field to a valid value into
// one row with the right event time.
func FuzzParse(f *testing.F) {
	f.Add(SampleYAML)
	f.Add([]byte(testTableYAML))
	good, err := os.ReadFile(filepath.Join("testdata", "good_full.good.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	// Durations past the 366 days a "d" may spell, odd layouts and keys
	// that need quoting.
	f.Add([]byte(`tables:
  - name: "n"
    topic: "yes: no # not a comment"
    event_time: {field: "on", max_future: 9000h}
    fields:
      - {name: "on", type: timestamp, format: "Mon, 02 Jan 2006 15:04:05 MST"}
      - {name: k, type: string, path: "a b.'c'.\"d\"", nullable: true}
      - {name: n2, type: int64, path: "a b.x"}
    rollup:
      windows: [6h, 366d]
      dimensions: []
      allowed_lateness: 1h30m
      late_horizon: 9000h
      measures:
        - {name: c, kind: count}
        - {name: q, kind: quantiles, field: n2, quantiles: [0.000001, 1e-2], relative_accuracy: 0.5}
        - {name: u, kind: distinct, field: k, precision: 4}
    retention: {raw: 36h, summaries: 400d}
`))
	f.Fuzz(func(t *testing.T, data []byte) {
		tables, err := Parse(data, "fuzz.yaml")
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		out, err := Marshal(tables)
		if err != nil {
			t.Fatalf("Marshal of accepted tables: %v", err)
		}
		again, err := Parse(out, "marshalled.yaml")
		if err != nil {
			t.Fatalf("Parse of Marshal's output: %v\n%s", err, out)
		}
		if len(again) != len(tables) {
			t.Fatalf("round trip: %d tables, want %d\n%s", len(again), len(tables), out)
		}
		for i := range tables {
			if a, b := normalized(tables[i]), normalized(again[i]); !reflect.DeepEqual(a, b) {
				t.Fatalf("round trip changed table %q:\n%+v\nbecame\n%+v\nvia\n%s", tables[i].Name, a, b, out)
			}
		}
		if out2, err := Marshal(again); err != nil || !bytes.Equal(out2, out) {
			t.Fatalf("Marshal is not stable over a round trip (%v):\n%s\nthen\n%s", err, out, out2)
		}
		for _, tbl := range tables {
			if err := tbl.Validate(); err != nil {
				t.Fatalf("accepted table fails Validate: %v", err)
			}
			if tbl.ArrowSchema().NumFields() != len(tbl.Fields)+3 || len(tbl.ParquetSchema().Fields()) != len(tbl.Fields)+3 {
				t.Fatal("schema column count")
			}
			rec, wantET, ok := validRecord(t, tbl)
			if !ok {
				continue
			}
			b := NewBatch(tbl, memory.NewGoAllocator())
			et, err := NewDecoder(tbl, WithNow(func() time.Time { return testNow })).Decode(b, rec, Meta{Source: "s", Partition: "0"})
			n := b.Len()
			b.Release()
			if len(rec) > tbl.MaxRecordBytes {
				var re *RecordError
				if !errors.As(err, &re) || re.Reason != ReasonTooLarge {
					t.Fatalf("record of %d bytes, limit %d: got %v, want %s", len(rec), tbl.MaxRecordBytes, err, ReasonTooLarge)
				}
				continue
			}
			if err != nil || n != 1 || et != wantET {
				t.Fatalf("valid record %s: event time %d, %d rows, %v; want %d, 1 row", rec, et, n, err, wantET)
			}
		}
	})
}

// normalized is a copy of t with empty slices as nil: a file may spell an
// empty list, Marshal leaves it out.
func normalized(t *Table) Table {
	c := *t
	if c.Rollup != nil {
		r := *c.Rollup
		if len(r.Dimensions) == 0 {
			r.Dimensions = nil
		}
		if len(r.dimIndex) == 0 {
			r.dimIndex = nil
		}
		r.Measures = slices.Clone(r.Measures)
		for i := range r.Measures {
			if len(r.Measures[i].Quantiles) == 0 {
				r.Measures[i].Quantiles = nil
			}
		}
		c.Rollup = &r
	}
	return c
}

// validRecord is a JSON record that sets every field of t to a valid value
// (nested paths as nested objects), and the event time (micros) it holds.
// ok is false for a timestamp layout that cannot read back its own output.
func validRecord(t *testing.T, tbl *Table) (rec []byte, eventTime int64, ok bool) {
	ts := testNow.Add(-time.Hour)
	root := map[string]any{}
	for i, f := range tbl.Fields {
		var v any
		us := ts.UnixMicro()
		switch f.Type {
		case TypeString:
			v = "v"
		case TypeInt64:
			v = 7
		case TypeFloat64:
			v = 1.5
		case TypeBool:
			v = true
		case TypeTimestamp:
			switch f.Format {
			case FormatRFC3339:
				v = ts.Format(time.RFC3339Nano)
			case FormatUnixS:
				v = ts.Unix()
			case FormatUnixMS:
				v = ts.UnixMilli()
			case FormatUnixUS:
				v = ts.UnixMicro()
			default:
				s := ts.Format(f.Format)
				back, err := time.Parse(f.Format, s)
				if err != nil {
					return nil, 0, false
				}
				v, us = s, back.UnixMicro()
			}
			if i == tbl.EventTimeIndex() {
				eventTime = us
			}
		}
		segs := f.PathSegments()
		m := root
		for _, k := range segs[:len(segs)-1] {
			next, _ := m[k].(map[string]any)
			if next == nil {
				next = map[string]any{}
				m[k] = next
			}
			m = next
		}
		m[segs[len(segs)-1]] = v
	}
	rec, err := json.Marshal(root)
	if err != nil {
		t.Fatal(err)
	}
	return rec, eventTime, true
}
