package schema

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow/memory"
)

const routeFields = `    event_time: {field: ts}
    fields:
      - {name: ts, type: timestamp}
      - {name: kind, type: string}
      - {name: k, type: string, nullable: true}
      - {name: n, type: int64, nullable: true}
      - {name: bts, type: timestamp, nullable: true}
`

func TestKafkaRouteAndColumnsValidation(t *testing.T) {
	cases := []struct{ name, kafka, wantErr string }{
		{"ok", `{topic: e, route: {field: kind, equals: a}, columns: {key: k, timestamp: bts, headers: {h: kind}}}`, ""},
		{"default route", `{topic: e, route: {field: kind, default: true}}`, ""},
		{"route without field", `{topic: e, route: {equals: a}}`, "kafka.route: field is missing"},
		{"route empty segment", `{topic: e, route: {field: "a..b", equals: a}}`, "empty path segment"},
		{"route without value", `{topic: e, route: {field: kind}}`, "neither equals nor default"},
		{"route both", `{topic: e, route: {field: kind, equals: a, default: true}}`, "both equals and default"},
		{"key not a field", `{topic: e, columns: {key: nope}}`, `key: "nope" is not a field`},
		{"key not a string", `{topic: e, columns: {key: n}}`, `key: field "n" has type int64, want string`},
		{"timestamp not a timestamp", `{topic: e, columns: {timestamp: k}}`, `timestamp: field "k" has type string, want timestamp`},
		{"header not a string", `{topic: e, columns: {headers: {h: bts}}}`, `header h: field "bts" has type timestamp, want string`},
		{"header without field", `{topic: e, columns: {headers: {h: ""}}}`, "header h: no field named"},
		{"field mapped twice", `{topic: e, columns: {key: k, headers: {h: k}}}`, `field "k" already gets key`},
		{"unknown option", `{topic: e, columns: {partition: k}}`, "partition"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte("tables:\n  - name: events\n    kafka: "+c.kafka+"\n"+routeFields), "t.yaml")
			if c.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, c.wantErr)
			}
		})
	}
}

func TestKinesisColumnsValidation(t *testing.T) {
	cases := []struct{ name, kinesis, wantErr string }{
		{"ok", `{stream: s, columns: {partition_key: k, timestamp: bts}}`, ""},
		{"partition key not a string", `{stream: s, columns: {partition_key: n}}`, `kinesis.columns: key: field "n" has type int64, want string`},
		{"timestamp not a field", `{stream: s, columns: {timestamp: nope}}`, `timestamp: "nope" is not a field`},
		{"no headers on kinesis", `{stream: s, columns: {headers: {h: k}}}`, "headers"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tables, err := Parse([]byte("tables:\n  - name: events\n    kinesis: "+c.kinesis+"\n"+routeFields), "t.yaml")
			if c.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if !tables[0].MapsMetadata() {
					t.Fatal("MapsMetadata is false")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, c.wantErr)
			}
		})
	}
}

func routedTable(t *testing.T, name, route string) *Table {
	t.Helper()
	kafka := "{topic: e}"
	if route != "" {
		kafka = "{topic: e, route: " + route + "}"
	}
	tables, err := Parse([]byte("tables:\n  - name: "+name+"\n    kafka: "+kafka+"\n"+routeFields), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return tables[0]
}

func TestRouterSharedTopic(t *testing.T) {
	a := routedTable(t, "a", "{field: kind, equals: x}")
	b := routedTable(t, "b", "{field: kind, equals: y}")
	def := routedTable(t, "d", "{field: kind, default: true}")
	bad := []struct {
		name    string
		tables  []*Table
		wantErr string
	}{
		{"one without route", []*Table{a, routedTable(t, "plain", "")}, `table "plain" needs a route`},
		{"two fields", []*Table{a, routedTable(t, "c", "{field: other, equals: z}")}, "routes on one field"},
		{"same value", []*Table{a, routedTable(t, "c", "{field: kind, equals: x}")}, `both take kind = "x"`},
		{"two defaults", []*Table{def, routedTable(t, "d2", "{field: kind, default: true}")}, "both the default route"},
	}
	for _, c := range bad {
		if _, err := NewRouter("e", c.tables); err == nil || !strings.Contains(err.Error(), c.wantErr) {
			t.Errorf("%s: err = %v, want one containing %q", c.name, err, c.wantErr)
		}
	}

	r, err := NewRouter("e", []*Table{a, b})
	if err != nil {
		t.Fatal(err)
	}
	for value, want := range map[string]int{
		`{"kind":"x"}`: 0, `{"kind":"y","n":1}`: 1, `{"kind":"z"}`: -1, `{"kind":1}`: -1, `{}`: -1, `[1]`: -1, `{"kind":`: -1,
	} {
		if got, why := r.Route([]byte(value)); got != want || (want < 0) != (why != "") {
			t.Errorf("Route(%s) = %d %q, want %d", value, got, why, want)
		}
	}
	r, err = NewRouter("e", []*Table{a, def})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := r.Route([]byte(`not json`)); got != 1 {
		t.Errorf("the default table does not take an unroutable record: %d", got)
	}
	if r, err := NewRouter("e", []*Table{routedTable(t, "plain", "")}); err != nil || r.Routed() {
		t.Errorf("a single table without a route: %v, routed %v", err, r != nil && r.Routed())
	}
}

func TestDecoderFillsMappedMetadata(t *testing.T) {
	tables, err := Parse([]byte("tables:\n  - name: events\n    kafka: {topic: e, columns: {key: k, timestamp: bts, headers: {h: kind}}}\n"+routeFields), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tb := tables[0]
	d := NewDecoder(tb)
	b := NewBatch(tb, memory.NewGoAllocator())
	defer b.Release()
	value := []byte(`{"ts":"2026-11-26T10:00:00Z","kind":"json","k":"json"}`)
	bts := time.Date(2026, 11, 26, 10, 0, 1, 0, time.UTC)
	if _, err := d.Decode(b, value, Meta{Key: []byte("the-key"), Headers: []Header{{Key: "h", Value: []byte("hv")}}, Time: bts}); err != nil {
		t.Fatal(err)
	}
	// No header: the required kind field is missing.
	if _, err := d.Decode(b, value, Meta{Key: []byte("k2"), Time: bts}); err == nil || !strings.Contains(err.Error(), "missing_field") {
		t.Fatalf("no header: err = %v, want missing_field", err)
	}
	if _, err := d.Decode(b, value, Meta{Key: []byte{0xff}, Headers: []Header{{Key: "h", Value: []byte("hv")}}}); err == nil || !strings.Contains(err.Error(), "invalid_utf8") {
		t.Fatalf("binary key: err = %v, want invalid_utf8", err)
	}
	// No key, no timestamp: nullable fields stay null.
	if _, err := d.Decode(b, value, Meta{Headers: []Header{{Key: "h", Value: []byte("hv2")}}}); err != nil {
		t.Fatal(err)
	}
	rec := b.NewRecord()
	defer rec.Release()
	if rec.NumRows() != 2 {
		t.Fatalf("%d rows, want 2", rec.NumRows())
	}
	got := rec.Column(1).String() + " " + rec.Column(2).String() + " " + rec.Column(4).String()
	want := `["hv" "hv2"] ["the-key" (null)] [` + strconv.FormatInt(bts.UnixMicro(), 10) + ` (null)]`
	if got != want {
		t.Fatalf("columns %s, want %s", got, want)
	}
}

// BenchmarkRoute is the extra cost per record of a topic whose tables
// route: one more parse of the record to find the routed field.
func BenchmarkRoute(b *testing.B) {
	tables := SampleTables()
	var events *Table
	for _, t := range tables {
		if t.Name == "events" {
			events = t
		}
	}
	a, c := *events, *events
	a.Name, c.Name = "a", "c"
	a.Kafka = &KafkaSource{Topic: "e", Route: &Route{Field: "event_type", Equals: "click"}}
	c.Kafka = &KafkaSource{Topic: "e", Route: &Route{Field: "event_type", Default: true}}
	r, err := NewRouter("e", []*Table{&a, &c})
	if err != nil {
		b.Fatal(err)
	}
	recs := sampleEvents(1024, 1)
	var bytes int64
	for _, v := range recs {
		bytes += int64(len(v))
	}
	b.SetBytes(bytes / int64(len(recs)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if got, _ := r.Route(recs[i%len(recs)]); got < 0 {
			b.Fatal("unrouted")
		}
	}
}
