package schema

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"
)

func TestLoadBad(t *testing.T) {
	cases := []struct {
		file string
		err  string
	}{
		{"unknown_type.bad.yaml", `unknown_type.bad.yaml: table "events": field "amount": unknown type "float"`},
		{"unknown_key.bad.yaml", `unknown_key.bad.yaml: line 5: unknown key "nulable"`},
		{"duplicate_field.bad.yaml", `duplicate_field.bad.yaml: table "events": field "user_id": defined more than once`},
		{"duplicate_table.bad.yaml", `duplicate_table.bad.yaml: table "events": defined more than once`},
		{"reserved_field.bad.yaml", `reserved_field.bad.yaml: table "events": field "_offset": field name "_offset" is reserved`},
		{"bad_table_name.bad.yaml", `bad_table_name.bad.yaml: table name "Events-2" is invalid`},
		{"event_time_missing.bad.yaml", `event_time_missing.bad.yaml: table "events": event_time.field is missing`},
		{"event_time_unknown.bad.yaml", `event_time_unknown.bad.yaml: table "events": event_time.field "time" is not a field of the table`},
		{"event_time_not_timestamp.bad.yaml", `event_time_not_timestamp.bad.yaml: table "events": event_time.field "ts" has type int64, want timestamp`},
		{"event_time_nullable.bad.yaml", `event_time_nullable.bad.yaml: table "events": event_time.field "ts" must not be nullable`},
		{"bad_format.bad.yaml", `bad_format.bad.yaml: table "events": field "ts": bad format "rfc3399"`},
		{"format_on_string.bad.yaml", `format_on_string.bad.yaml: table "events": field "day": format applies to timestamp fields only, not string`},
		{"bad_unit.bad.yaml", `bad_unit.bad.yaml: table "events": field "ts": unknown unit "nanos" (want micros or millis)`},
		{"bad_path.bad.yaml", `bad_path.bad.yaml: table "events": field "city": bad path "geo..city": empty key`},
		{"path_prefix.bad.yaml", `path_prefix.bad.yaml: table "events": field "geo": path "geo" is a prefix of field "city"'s path "geo.city"`},
		{"path_duplicate.bad.yaml", `path_duplicate.bad.yaml: table "events": field "town": path "geo.city" is already used by field "city"`},
		{"no_fields.bad.yaml", `no_fields.bad.yaml: table "events": no fields defined`},
		{"no_tables.bad.yaml", `no_tables.bad.yaml: no tables defined`},
		{"negative_size.bad.yaml", `negative_size.bad.yaml: table "events": max_record_bytes must be positive, got -1`},
		{"bad_duration.bad.yaml", `bad_duration.bad.yaml: line 3: cannot use !!str`},
		{"missing_type.bad.yaml", `missing_type.bad.yaml: table "events": field "amount": type is missing`},
		{"two_documents.bad.yaml", `two_documents.bad.yaml: more than one YAML document`},
		{"not_yaml.bad.yaml", `not_yaml.bad.yaml: line 1: did not find expected '-' indicator`},
		{"retention_too_short.bad.yaml", `retention_too_short.bad.yaml: table "events": retention: raw must be at least 1d (or 0: forever), got 12h0m0s`},
		{"retention_summaries_no_rollup.bad.yaml", `retention_summaries_no_rollup.bad.yaml: table "events": retention: summaries needs a rollup`},
		{"retention_bad_duration.bad.yaml", `retention_bad_duration.bad.yaml: line 5: retention: raw: bad duration "3 months"`},
		{"retention_unknown_key.bad.yaml", `retention_unknown_key.bad.yaml: line 7: unknown key "summary" in retention`},
		{"retention_shorter_than_window.bad.yaml", `retention_shorter_than_window.bad.yaml: table "events": retention: summaries 72h0m0s is shorter than the rollup's coarsest window 168h0m0s`},
	}
	seen := map[string]bool{}
	for _, tc := range cases {
		seen[tc.file] = true
		t.Run(tc.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			_, err = Parse(data, tc.file)
			if err == nil {
				t.Fatalf("no error, want %q", tc.err)
			}
			if !strings.HasPrefix(err.Error(), tc.err) {
				t.Fatalf("error\n  %q\nwant prefix\n  %q", err, tc.err)
			}
		})
	}
	// Every bad file must have an expectation, so none is silently skipped.
	files, _ := filepath.Glob("testdata/*.bad.yaml")
	for _, f := range files {
		if !seen[filepath.Base(f)] {
			t.Errorf("%s has no expected error in TestLoadBad", f)
		}
	}
}

func TestLoadGood(t *testing.T) {
	tables, err := Load(filepath.Join("testdata", "good_full.good.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(tables) != 3 {
		t.Fatalf("%d tables", len(tables))
	}
	c, m := tables[0], tables[1]
	if c.Name != "clicks" || c.Topic != "web.clicks" || c.MaxRecordBytes != 4096 ||
		c.EventTime.MaxFuture != 10*time.Minute || c.EventTimeIndex() != 0 {
		t.Errorf("clicks: %+v", c)
	}
	if c.Rollup == nil || len(c.Rollup.Measures) != 8 || m.Rollup != nil {
		t.Errorf("rollup not parsed: %+v", c.Rollup)
	}
	if f := c.Fields[4]; strings.Join(f.PathSegments(), "/") != "geo/address/zip" {
		t.Errorf("zip path %v", f.PathSegments())
	}
	// defaults
	if m.Topic != "minimal" || m.MaxRecordBytes != DefaultMaxRecordBytes || m.EventTime.MaxFuture != DefaultMaxFuture ||
		m.Fields[0].Format != FormatRFC3339 || m.Fields[0].Unit != UnitMicros {
		t.Errorf("minimal defaults: %+v", m)
	}
	if c.Retention != nil || m.Retention == nil || *m.Retention != (Retention{Raw: 36 * time.Hour}) {
		t.Errorf("retention of clicks %+v, minimal %+v", c.Retention, m.Retention)
	}
	if h := tables[2]; h.Retention == nil || *h.Retention != (Retention{Raw: 90 * 24 * time.Hour, Summaries: 730 * 24 * time.Hour}) ||
		h.Retention.Unit(h) != 7*24*time.Hour || m.Retention.Unit(m) != 24*time.Hour {
		t.Errorf("retention of hourly %+v", h.Retention)
	}
	if _, err := Load(filepath.Join("testdata", "does-not-exist.yaml")); err == nil {
		t.Error("missing file loaded")
	}
}

func TestSampleTable(t *testing.T) {
	tables := SampleTables()
	if len(tables) != 1 || tables[0].Name != "events" || tables[0].Topic != "events" {
		t.Fatalf("sample tables: %+v", tables)
	}
	e := tables[0]
	want := []struct {
		name     string
		typ      Type
		nullable bool
	}{
		{"ts", TypeTimestamp, false}, {"event_id", TypeString, false}, {"user_id", TypeString, false},
		{"event_type", TypeString, false}, {"country", TypeString, true}, {"device", TypeString, true},
		{"amount", TypeFloat64, false}, {"latency_ms", TypeInt64, false}, {"ok", TypeBool, false},
	}
	if len(e.Fields) != len(want) {
		t.Fatalf("%d fields", len(e.Fields))
	}
	for i, w := range want {
		f := e.Fields[i]
		if f.Name != w.name || f.Type != w.typ || f.Nullable != w.nullable {
			t.Errorf("field %d: %+v, want %+v", i, f, w)
		}
	}
	if e.EventTime.Field != "ts" || e.Fields[0].Format != FormatRFC3339 || e.Fields[0].Unit != UnitMicros {
		t.Errorf("event time: %+v %+v", e.EventTime, e.Fields[0])
	}
	// Tables are fresh per call.
	tables[0].Name = "changed"
	if SampleTables()[0].Name != "events" {
		t.Error("SampleTables shares state between calls")
	}
}

func TestArrowSchema(t *testing.T) {
	tbl := testTable(t)
	s := tbl.ArrowSchema()
	wantNames := []string{"ts", "s", "n", "f", "b", "opt", "city", "zip", "us", "ms", "sec", "day", "_source", "_partition", "_offset"}
	if s.NumFields() != len(wantNames) {
		t.Fatalf("%d fields", s.NumFields())
	}
	for i, n := range wantNames {
		if s.Field(i).Name != n {
			t.Errorf("field %d is %s, want %s", i, s.Field(i).Name, n)
		}
	}
	ts := s.Field(0).Type.(*arrow.TimestampType)
	if ts.Unit != arrow.Microsecond || ts.TimeZone != "UTC" || s.Field(0).Nullable {
		t.Errorf("ts: %v nullable=%v", ts, s.Field(0).Nullable)
	}
	if ms := s.Field(9).Type.(*arrow.TimestampType); ms.Unit != arrow.Millisecond || ms.TimeZone != "UTC" {
		t.Errorf("ms: %v", ms)
	}
	for i := 0; i < s.NumFields(); i++ {
		if tt, ok := s.Field(i).Type.(*arrow.TimestampType); ok && tt.Unit == arrow.Nanosecond {
			t.Errorf("field %s uses nanoseconds", s.Field(i).Name)
		}
	}
	if !s.Field(5).Nullable || s.Field(1).Nullable || s.Field(12).Nullable || s.Field(14).Nullable {
		t.Error("nullability wrong")
	}
	if !arrow.TypeEqual(s.Field(14).Type, arrow.PrimitiveTypes.Int64) || !arrow.TypeEqual(s.Field(13).Type, arrow.BinaryTypes.String) {
		t.Error("metadata column types wrong")
	}
}

func TestParquetSchema(t *testing.T) {
	tbl := testTable(t)
	ps := tbl.ParquetSchema()
	fields := ps.Fields()
	as := tbl.ArrowSchema()
	if len(fields) != as.NumFields() {
		t.Fatalf("%d parquet columns, %d arrow", len(fields), as.NumFields())
	}
	for i, f := range fields {
		af := as.Field(i)
		if f.Name() != af.Name || f.Optional() != af.Nullable || f.Required() == af.Nullable {
			t.Errorf("column %d: %s optional=%v, arrow %s nullable=%v", i, f.Name(), f.Optional(), af.Name, af.Nullable)
		}
		lt := f.Type().LogicalType()
		switch af.Type.ID() {
		case arrow.STRING:
			if _, ok := lt.Value.(*format.StringType); f.Type().Kind() != parquet.ByteArray || !ok {
				t.Errorf("%s: %v not a STRING byte array", f.Name(), f.Type())
			}
		case arrow.TIMESTAMP:
			tt, ok := lt.Value.(*format.TimestampType)
			if f.Type().Kind() != parquet.Int64 || !ok || !tt.IsAdjustedToUTC {
				t.Fatalf("%s: %v not an adjusted timestamp", f.Name(), f.Type())
			}
			_, millis := tt.Unit.Value.(*format.MilliSeconds)
			_, micros := tt.Unit.Value.(*format.MicroSeconds)
			wantMillis := af.Type.(*arrow.TimestampType).Unit == arrow.Millisecond
			if millis != wantMillis || micros == wantMillis {
				t.Errorf("%s: unit %s", f.Name(), &tt.Unit)
			}
		case arrow.INT64:
			if f.Type().Kind() != parquet.Int64 {
				t.Errorf("%s: %v", f.Name(), f.Type())
			}
		case arrow.FLOAT64:
			if f.Type().Kind() != parquet.Double {
				t.Errorf("%s: %v", f.Name(), f.Type())
			}
		case arrow.BOOL:
			if f.Type().Kind() != parquet.Boolean {
				t.Errorf("%s: %v", f.Name(), f.Type())
			}
		}
	}
	if !strings.Contains(ps.String(), "optional binary opt (STRING)") {
		t.Errorf("schema text:\n%s", ps)
	}
}
