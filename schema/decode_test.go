package schema

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"
)

// testTableYAML exercises every type, nullability, a nested path and the
// timestamp formats and units.
const testTableYAML = `
tables:
  - name: t
    max_record_bytes: 2048
    event_time: {field: ts, max_future: 1h}
    fields:
      - {name: ts, type: timestamp}
      - {name: s, type: string}
      - {name: n, type: int64}
      - {name: f, type: float64}
      - {name: b, type: bool}
      - {name: opt, type: string, nullable: true}
      - {name: city, type: string, path: geo.city, nullable: true}
      - {name: zip, type: int64, path: geo.zip, nullable: true}
      - {name: us, type: timestamp, format: unix_us, nullable: true}
      - {name: ms, type: timestamp, format: unix_ms, unit: millis, nullable: true}
      - {name: sec, type: timestamp, format: unix_s, nullable: true}
      - {name: day, type: timestamp, format: "2006-01-02 15:04", nullable: true}
`

var testNow = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func testTable(t testing.TB) *Table {
	t.Helper()
	tables, err := Parse([]byte(testTableYAML), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return tables[0]
}

const okPrefix = `{"ts":"2026-11-26T10:15:30.123456Z","s":"x","n":1,"f":1,"b":true`

func TestDecodeRejects(t *testing.T) {
	tbl := testTable(t)
	deep := strings.Repeat("[", 70) + strings.Repeat("]", 70)
	cases := []struct {
		name   string
		in     string
		reason Reason
		field  string
	}{
		{"empty", ``, ReasonMalformedJSON, ""},
		{"whitespace only", "  \n", ReasonMalformedJSON, ""},
		{"truncated", `{"ts":"2026-11-26T10:15:30Z"`, ReasonMalformedJSON, ""},
		{"trailing garbage", okPrefix + `} x`, ReasonMalformedJSON, ""},
		{"two objects", okPrefix + `}{}`, ReasonMalformedJSON, ""},
		{"trailing comma", okPrefix + `,}`, ReasonMalformedJSON, ""},
		{"single quotes", `{'ts':1}`, ReasonMalformedJSON, ""},
		{"NaN literal", okPrefix + `,"x":NaN}`, ReasonMalformedJSON, ""},
		{"Infinity for float", `{"ts":"2026-11-26T10:15:30Z","s":"x","n":1,"f":Infinity,"b":true}`, ReasonMalformedJSON, ""},
		{"leading zero", okPrefix + `,"x":01}`, ReasonMalformedJSON, ""},
		{"bare minus", okPrefix + `,"x":-}`, ReasonMalformedJSON, ""},
		{"dot without digits", okPrefix + `,"x":1.}`, ReasonMalformedJSON, ""},
		{"bad exponent", okPrefix + `,"x":1e}`, ReasonMalformedJSON, ""},
		{"plus sign", okPrefix + `,"x":+1}`, ReasonMalformedJSON, ""},
		{"control char in string", okPrefix + ",\"x\":\"a\tb\"}", ReasonMalformedJSON, ""},
		{"bad escape", okPrefix + `,"x":"\q"}`, ReasonMalformedJSON, ""},
		{"short unicode escape", okPrefix + `,"x":"\u12"}`, ReasonMalformedJSON, ""},
		{"bad literal", okPrefix + `,"x":tru}`, ReasonMalformedJSON, ""},
		{"literal with junk", okPrefix + `,"x":truex}`, ReasonMalformedJSON, ""},
		{"missing colon", okPrefix + `,"x" 1}`, ReasonMalformedJSON, ""},
		{"unquoted key", okPrefix + `,x:1}`, ReasonMalformedJSON, ""},
		{"bad array in ignored key", okPrefix + `,"x":[1,]}`, ReasonMalformedJSON, ""},
		{"deep nesting", okPrefix + `,"x":` + deep + `}`, ReasonMalformedJSON, ""},
		{"malformed beats wrong type", `{"n":"x",}`, ReasonMalformedJSON, ""},
		{"top-level array", `[1,2]`, ReasonNotObject, ""},
		{"top-level string", `"hello"`, ReasonNotObject, ""},
		{"top-level null", ` null `, ReasonNotObject, ""},
		{"top-level number", `42`, ReasonNotObject, ""},
		{"invalid utf8 in value", okPrefix + ",\"opt\":\"a\xffb\"}", ReasonInvalidUTF8, ""},
		{"invalid utf8 in ignored key", okPrefix + ",\"\xc3\x28\":1}", ReasonInvalidUTF8, ""},
		{"utf8 surrogate bytes", okPrefix + ",\"opt\":\"\xed\xa0\x80\"}", ReasonInvalidUTF8, ""},
		{"lone surrogate escape", okPrefix + `,"opt":"\ud800"}`, ReasonInvalidUTF8, ""},
		{"lone low surrogate escape", okPrefix + `,"opt":"\udc00x"}`, ReasonInvalidUTF8, ""},
		{"too large", okPrefix + `,"pad":"` + strings.Repeat("a", 2048) + `"}`, ReasonTooLarge, ""},
		{"string for int", `{"ts":"2026-11-26T10:15:30Z","s":"x","n":"1","f":1,"b":true}`, ReasonWrongType, "n"},
		{"fraction for int", `{"ts":"2026-11-26T10:15:30Z","s":"x","n":1.5,"f":1,"b":true}`, ReasonWrongType, "n"},
		{"negative exponent for int", `{"ts":"2026-11-26T10:15:30Z","s":"x","n":15e-1,"f":1,"b":true}`, ReasonWrongType, "n"},
		{"string for float", `{"ts":"2026-11-26T10:15:30Z","s":"x","n":1,"f":"1.5","b":true}`, ReasonWrongType, "f"},
		{"number for string", `{"ts":"2026-11-26T10:15:30Z","s":1,"n":1,"f":1,"b":true}`, ReasonWrongType, "s"},
		{"object for string", `{"ts":"2026-11-26T10:15:30Z","s":{"a":1},"n":1,"f":1,"b":true}`, ReasonWrongType, "s"},
		{"number for bool", `{"ts":"2026-11-26T10:15:30Z","s":"x","n":1,"f":1,"b":1}`, ReasonWrongType, "b"},
		{"string for bool", `{"ts":"2026-11-26T10:15:30Z","s":"x","n":1,"f":1,"b":"true"}`, ReasonWrongType, "b"},
		{"string for nested object", okPrefix + `,"geo":"Berlin"}`, ReasonWrongType, "city"},
		{"bool for unix_us", okPrefix + `,"us":true}`, ReasonWrongType, "us"},
		{"unparsable other timestamp", okPrefix + `,"day":"yesterday"}`, ReasonWrongType, "day"},
		{"int past int64", `{"ts":"2026-11-26T10:15:30Z","s":"x","n":9223372036854775808,"f":1,"b":true}`, ReasonNumberOutOfRange, "n"},
		{"int below int64", `{"ts":"2026-11-26T10:15:30Z","s":"x","n":-9223372036854775809,"f":1,"b":true}`, ReasonNumberOutOfRange, "n"},
		{"int exponent too big", `{"ts":"2026-11-26T10:15:30Z","s":"x","n":1e19,"f":1,"b":true}`, ReasonNumberOutOfRange, "n"},
		{"float overflow", `{"ts":"2026-11-26T10:15:30Z","s":"x","n":1,"f":1e400,"b":true}`, ReasonNumberOutOfRange, "f"},
		{"unix ms overflow", okPrefix + `,"ms":1e30}`, ReasonNumberOutOfRange, "ms"},
		{"missing required", `{"ts":"2026-11-26T10:15:30Z","s":"x","n":1,"f":1}`, ReasonMissingField, "b"},
		{"null required", `{"ts":"2026-11-26T10:15:30Z","s":null,"n":1,"f":1,"b":true}`, ReasonMissingField, "s"},
		{"missing event time", `{"s":"x","n":1,"f":1,"b":true}`, ReasonMissingField, "ts"},
		{"duplicate key last wins to null", okPrefix + `,"s":null}`, ReasonMissingField, "s"},
		{"event time not RFC 3339", `{"ts":"2026-11-26 10:15:30","s":"x","n":1,"f":1,"b":true}`, ReasonBadEventTime, "ts"},
		{"event time bad day", `{"ts":"2026-02-30T10:15:30Z","s":"x","n":1,"f":1,"b":true}`, ReasonBadEventTime, "ts"},
		{"event time number", `{"ts":1764152130,"s":"x","n":1,"f":1,"b":true}`, ReasonBadEventTime, "ts"},
		{"event time leap second", `{"ts":"2026-11-26T23:59:60Z","s":"x","n":1,"f":1,"b":true}`, ReasonBadEventTime, "ts"},
		{"event time before 2000", `{"ts":"1999-12-31T23:59:59.999999Z","s":"x","n":1,"f":1,"b":true}`, ReasonAbsurdEventTime, "ts"},
		{"event time epoch", `{"ts":"1970-01-01T00:00:00Z","s":"x","n":1,"f":1,"b":true}`, ReasonAbsurdEventTime, "ts"},
		{"event time too far ahead", `{"ts":"2026-11-26T13:00:00.000001Z","s":"x","n":1,"f":1,"b":true}`, ReasonAbsurdEventTime, "ts"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := NewDecoder(tbl, WithNow(func() time.Time { return testNow }))
			b := NewBatch(tbl, memory.NewGoAllocator())
			defer b.Release()
			_, err := d.Decode(b, []byte(tc.in), Meta{Source: "s", Partition: "0"})
			var re *RecordError
			if !errors.As(err, &re) {
				t.Fatalf("Decode(%q) = %v, want a *RecordError", tc.in, err)
			}
			if re.Reason != tc.reason || re.Field != tc.field {
				t.Fatalf("Decode(%q): got reason %s field %q (%v), want %s field %q", tc.in, re.Reason, re.Field, re, tc.reason, tc.field)
			}
			if re.Error() == "" || re.Detail == "" {
				t.Fatalf("empty error text: %#v", re)
			}
			if b.Len() != 0 {
				t.Fatalf("rejected record appended %d rows", b.Len())
			}
			rec := b.NewRecord()
			defer rec.Release()
			for i, col := range rec.Columns() {
				if col.Len() != 0 {
					t.Fatalf("column %d has %d values after a rejected record", i, col.Len())
				}
			}
		})
	}
}

func TestDecodeValues(t *testing.T) {
	tbl := testTable(t)
	type want struct {
		ts          int64 // micros
		s           string
		n           int64
		f           float64
		b           bool
		opt, city   *string
		zip         *int64
		us, ms, sec *int64 // arrow units: micros, millis, micros
		day         *int64
	}
	str := func(s string) *string { return &s }
	i64 := func(v int64) *int64 { return &v }
	ts := time.Date(2026, 11, 26, 10, 15, 30, 123456000, time.UTC).UnixMicro()
	cases := []struct {
		name string
		in   string
		want want
	}{
		{"minimal, nullables absent", `{"ts":"2026-11-26T10:15:30.123456Z","s":"x","n":87,"f":12.5,"b":true}`,
			want{ts: ts, s: "x", n: 87, f: 12.5, b: true}},
		{"all set, whitespace, unknown keys",
			" {\n\t\"extra\": {\"deep\": [1, {\"a\": null}, \"s\", true, -0.5e-3]}, \"ts\" : \"2026-11-26T11:15:30.1234569+01:00\", \"s\":\"h\\u00e9llo \\\"q\\\" \\ud83d\\ude00\", \"n\":-5, \"f\":-1.5e2, \"b\":false," +
				"\"opt\":\"\", \"geo\":{\"city\":\"Berlin\",\"zip\":10115,\"other\":1}, \"us\":1764152130123456, \"ms\":\"1764152130123\", \"sec\":1764152130.5, \"day\":\"2026-11-26 10:15\" } ",
			want{ts: ts, s: "héllo \"q\" 😀", n: -5, f: -150, b: false, opt: str(""), city: str("Berlin"), zip: i64(10115),
				us: i64(1764152130123456), ms: i64(1764152130123), sec: i64(1764152130500000), day: i64(time.Date(2026, 11, 26, 10, 15, 0, 0, time.UTC).UnixMicro())}},
		{"integral forms for int64", `{"ts":"2026-11-26T10:15:30.123456Z","s":"x","n":8.7e1,"f":1,"b":true,"zip":0}`,
			want{ts: ts, s: "x", n: 87, f: 1, b: true}},
		{"int with .0", `{"ts":"2026-11-26T10:15:30.123456Z","s":"x","n":87.000,"f":7,"b":true}`,
			want{ts: ts, s: "x", n: 87, f: 7, b: true}},
		{"int64 extremes", `{"ts":"2026-11-26T10:15:30.123456Z","s":"x","n":-9223372036854775808,"f":1,"b":true,"geo":{"zip":9223372036854775807}}`,
			want{ts: ts, s: "x", n: math.MinInt64, f: 1, b: true, zip: i64(math.MaxInt64)}},
		{"nulls for nullables, null object", `{"ts":"2026-11-26T10:15:30.123456Z","s":"x","n":1,"f":1,"b":true,"opt":null,"geo":null,"us":null}`,
			want{ts: ts, s: "x", n: 1, f: 1, b: true}},
		{"duplicate nested object replaces", `{"ts":"2026-11-26T10:15:30.123456Z","s":"x","n":1,"f":1,"b":true,"geo":{"city":"A","zip":1},"geo":{"zip":2}}`,
			want{ts: ts, s: "x", n: 1, f: 1, b: true, zip: i64(2)}},
		{"duplicate key last wins", `{"ts":"2026-11-26T10:15:30.123456Z","s":"first","n":1,"f":1,"b":true,"s":"second"}`,
			want{ts: ts, s: "second", n: 1, f: 1, b: true}},
		{"sub-microsecond digits truncated", `{"ts":"2026-11-26T10:15:30.1234569999Z","s":"x","n":1,"f":1,"b":true}`,
			want{ts: ts, s: "x", n: 1, f: 1, b: true}},
		{"negative unix time floors", `{"ts":"2026-11-26T10:15:30.123456Z","s":"x","n":1,"f":1,"b":true,"sec":-1.0000005,"ms":-1.5}`,
			want{ts: ts, s: "x", n: 1, f: 1, b: true, sec: i64(-1000001), ms: i64(-2)}},
		{"event time exactly max future", `{"ts":"2026-11-26T13:00:00Z","s":"x","n":1,"f":1,"b":true}`,
			want{ts: testNow.Add(time.Hour).UnixMicro(), s: "x", n: 1, f: 1, b: true}},
	}
	d := NewDecoder(tbl, WithNow(func() time.Time { return testNow }))
	b := NewBatch(tbl, memory.NewGoAllocator())
	defer b.Release()
	for i, tc := range cases {
		et, err := d.Decode(b, []byte(tc.in), Meta{Source: "kafka:t", Partition: "7", Offset: int64(100 + i)})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if et != tc.want.ts {
			t.Errorf("%s: event time %d, want %d", tc.name, et, tc.want.ts)
		}
	}
	if b.Len() != len(cases) || b.ApproxBytes() <= 0 {
		t.Fatalf("batch has %d rows, %d bytes", b.Len(), b.ApproxBytes())
	}
	rec := b.NewRecord()
	defer rec.Release()
	if !rec.Schema().Equal(tbl.ArrowSchema()) {
		t.Fatalf("record schema %s", rec.Schema())
	}
	col := func(name string) arrow.Array { return rec.Column(rec.Schema().FieldIndices(name)[0]) }
	checkStr := func(name string, row int, want *string) {
		a := col(name).(*array.String)
		if want == nil {
			if !a.IsNull(row) {
				t.Errorf("%s: %s = %q, want null", cases[row].name, name, a.Value(row))
			}
			return
		}
		if a.IsNull(row) || a.Value(row) != *want {
			t.Errorf("%s: %s = %q (null %v), want %q", cases[row].name, name, a.Value(row), a.IsNull(row), *want)
		}
	}
	checkInt := func(name string, row int, want *int64) {
		a := col(name)
		var got int64
		switch a := a.(type) {
		case *array.Int64:
			got = a.Value(row)
		case *array.Timestamp:
			got = int64(a.Value(row))
		}
		if want == nil {
			if !a.IsNull(row) {
				t.Errorf("%s: %s = %d, want null", cases[row].name, name, got)
			}
			return
		}
		if a.IsNull(row) || got != *want {
			t.Errorf("%s: %s = %d (null %v), want %d", cases[row].name, name, got, a.IsNull(row), *want)
		}
	}
	for row, tc := range cases {
		w := tc.want
		checkInt("ts", row, &w.ts)
		checkStr("s", row, &w.s)
		checkInt("n", row, &w.n)
		if got := col("f").(*array.Float64).Value(row); got != w.f {
			t.Errorf("%s: f = %v, want %v", tc.name, got, w.f)
		}
		if got := col("b").(*array.Boolean).Value(row); got != w.b {
			t.Errorf("%s: b = %v, want %v", tc.name, got, w.b)
		}
		checkStr("opt", row, w.opt)
		checkStr("city", row, w.city)
		checkInt("zip", row, w.zip)
		checkInt("us", row, w.us)
		checkInt("ms", row, w.ms)
		checkInt("sec", row, w.sec)
		checkInt("day", row, w.day)
		source := "kafka:t"
		part := "7"
		off := int64(100 + row)
		checkStr(ColSource, row, &source)
		checkStr(ColPartition, row, &part)
		checkInt(ColOffset, row, &off)
	}
}

// TestDecodeAfterReject makes sure state from a rejected record (slots,
// scratch) never leaks into the next one.
func TestDecodeAfterReject(t *testing.T) {
	tbl := testTable(t)
	d := NewDecoder(tbl, WithNow(func() time.Time { return testNow }))
	b := NewBatch(tbl, nil)
	defer b.Release()
	if _, err := d.Decode(b, []byte(`{"ts":"2026-11-26T10:15:30Z","s":"x","n":1,"f":1,"b":true,"opt":"leak","geo":{"city":"leak"},"n":"bad"}`), Meta{}); err == nil {
		t.Fatal("want an error")
	}
	if _, err := d.Decode(b, []byte(`{"ts":"2026-11-26T10:15:30Z","s":"y","n":2,"f":1,"b":true}`), Meta{}); err != nil {
		t.Fatal(err)
	}
	rec := b.NewRecord()
	defer rec.Release()
	if rec.NumRows() != 1 || !rec.Column(5).IsNull(0) || !rec.Column(6).IsNull(0) {
		t.Fatalf("state leaked: %v", rec)
	}
}

func TestDecodeSampleTable(t *testing.T) {
	tbl := SampleTables()[0]
	d := NewDecoder(tbl, WithNow(fixedNow))
	b := NewBatch(tbl, nil)
	defer b.Release()
	in := `{"ts":"2026-11-26T10:15:30.123456Z","event_id":"3f9c","user_id":"u_18234","event_type":"page_view","country":"DE","device":"mobile","amount":12.5,"latency_ms":87,"ok":true}`
	et, err := d.Decode(b, []byte(in), Meta{Source: "kafka:events", Partition: "3", Offset: 42})
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2026, 11, 26, 10, 15, 30, 123456000, time.UTC).UnixMicro(); et != want {
		t.Fatalf("event time %d, want %d", et, want)
	}
	// country and device are nullable in the sample table, the rest required.
	if _, err := d.Decode(b, []byte(`{"ts":"2026-11-26T10:15:30Z","event_id":"a","user_id":"u","event_type":"click","amount":0,"latency_ms":0,"ok":false}`), Meta{}); err != nil {
		t.Fatalf("nullable country/device: %v", err)
	}
	_, err = d.Decode(b, []byte(`{"ts":"2026-11-26T10:15:30Z","event_id":"a","user_id":"u","amount":0,"latency_ms":0,"ok":false}`), Meta{})
	var re *RecordError
	if !errors.As(err, &re) || re.Reason != ReasonMissingField || re.Field != "event_type" {
		t.Fatalf("missing event_type: %v", err)
	}
	if b.Len() != 2 {
		t.Fatalf("%d rows", b.Len())
	}
}

func TestDecodeBatchOfOtherTable(t *testing.T) {
	d := NewDecoder(testTable(t))
	b := NewBatch(SampleTables()[0], nil)
	defer b.Release()
	_, err := d.Decode(b, []byte(`{}`), Meta{})
	var re *RecordError
	if err == nil || errors.As(err, &re) {
		t.Fatalf("want a plain error for a mismatched batch, got %v", err)
	}
}

func TestParseRFC3339MatchesTime(t *testing.T) {
	for _, s := range []string{
		"2026-11-26T10:15:30Z", "2026-11-26T10:15:30.1Z", "2026-11-26T10:15:30.123456789Z",
		"2024-02-29T00:00:00Z", "2000-01-01T00:00:00+14:00", "1969-12-31T23:59:59.999999-23:59",
		"0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z",
	} {
		got, ok := parseRFC3339Micros([]byte(s))
		want, err := time.Parse(time.RFC3339Nano, s)
		if !ok || err != nil || got != want.UnixMicro() {
			t.Errorf("%s: got %d %v, time.Parse %d %v", s, got, ok, want.UnixMicro(), err)
		}
	}
	for _, s := range []string{
		"2023-02-29T00:00:00Z", "2026-13-01T00:00:00Z", "2026-11-26T24:00:00Z", "2026-11-26t10:15:30Z",
		"2026-11-26T10:15:30", "2026-11-26T10:15:30.Z", "2026-11-26T10:15:30+0100", "2026-11-26T10:15:30Zjunk",
	} {
		if _, ok := parseRFC3339Micros([]byte(s)); ok {
			t.Errorf("%s: accepted", s)
		}
	}
}

// TestBatchReuse checks that records keep their values after the batch is
// refilled, and that nulls placed anywhere (first row, after valid rows,
// across a byte of the bitmap) come out right.
func TestBatchReuse(t *testing.T) {
	tbl := testTable(t)
	d := NewDecoder(tbl, WithNow(func() time.Time { return testNow }))
	b := NewBatch(tbl, nil)
	defer b.Release()
	fill := func(n int, optEvery int, tag string) arrow.Record {
		for i := 0; i < n; i++ {
			opt := "null"
			if (i+1)%optEvery != 0 {
				opt = `"` + tag + strconvItoa(i) + `"`
			}
			in := `{"ts":"2026-11-26T10:15:30Z","s":"` + tag + `","n":` + strconvItoa(i) + `,"f":1,"b":` + map[bool]string{true: "true", false: "false"}[i%3 == 0] + `,"opt":` + opt + `}`
			if _, err := d.Decode(b, []byte(in), Meta{Source: "src", Partition: "p", Offset: int64(i)}); err != nil {
				t.Fatal(err)
			}
		}
		return b.NewRecord()
	}
	check := func(rec arrow.Record, n, optEvery int, tag string) {
		t.Helper()
		if int(rec.NumRows()) != n {
			t.Fatalf("%d rows, want %d", rec.NumRows(), n)
		}
		s := rec.Column(1).(*array.String)
		nn := rec.Column(2).(*array.Int64)
		bb := rec.Column(4).(*array.Boolean)
		opt := rec.Column(5).(*array.String)
		for i := 0; i < n; i++ {
			if s.Value(i) != tag || nn.Value(i) != int64(i) || bb.Value(i) != (i%3 == 0) {
				t.Fatalf("%s row %d: %q %d %v", tag, i, s.Value(i), nn.Value(i), bb.Value(i))
			}
			if wantNull := (i+1)%optEvery == 0; opt.IsNull(i) != wantNull || (!wantNull && opt.Value(i) != tag+strconvItoa(i)) {
				t.Fatalf("%s row %d: opt %q null=%v", tag, i, opt.Value(i), opt.IsNull(i))
			}
		}
		if rec.Column(1).NullN() != 0 || rec.Column(5).NullN() != n/optEvery {
			t.Fatalf("%s: null counts %d %d", tag, rec.Column(1).NullN(), rec.Column(5).NullN())
		}
	}
	r1 := fill(37, 5, "a")
	defer r1.Release()
	if b.Len() != 0 || b.ApproxBytes() == 0 {
		t.Fatalf("after NewRecord: len %d, %d bytes reserved", b.Len(), b.ApproxBytes())
	}
	r2 := fill(100, 9, "b")
	defer r2.Release()
	r3 := fill(3, 1, "c") // all null, from row 0
	defer r3.Release()
	check(r1, 37, 5, "a")
	check(r2, 100, 9, "b")
	check(r3, 3, 1, "c")
	empty := b.NewRecord()
	defer empty.Release()
	if empty.NumRows() != 0 || empty.NumCols() != 15 {
		t.Fatalf("empty record %d rows %d cols", empty.NumRows(), empty.NumCols())
	}
}

func strconvItoa(i int) string { return strconv.Itoa(i) }
