package schema

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow/memory"
)

// eventTimeFormats are the timestamp formats a table may give its event
// time, each with a value it reads as 2026-11-26T10:15:30Z and values it
// cannot read as a time.
var eventTimeFormats = []struct {
	format string
	good   string
	bad    []string
}{
	{FormatRFC3339, `"2026-11-26T10:15:30Z"`, []string{
		`"yesterday"`, `""`, `"2026-11-26 10:15:30"`, `"2026-02-30T10:15:30Z"`, `"2026-11-26T23:59:60Z"`,
		`1795688130`, `true`, `{"at":"2026-11-26T10:15:30Z"}`, `["2026-11-26T10:15:30Z"]`,
	}},
	{FormatUnixS, `1795688130`, []string{
		`"yesterday"`, `""`, `"1795688130x"`, `"0x10"`, `" 1795688130"`, `1e30`, `"1e30"`, `-1e30`,
		`true`, `{"s":1795688130}`, `[1795688130]`,
	}},
	{FormatUnixMS, `1795688130000`, []string{
		`"yesterday"`, `""`, `"1795688130000x"`, `1e30`, `"-1e30"`, `false`, `{}`, `[]`,
	}},
	{FormatUnixUS, `1795688130000000`, []string{
		`"yesterday"`, `""`, `"1.7e15.0"`, `1e19`, `"9223372036854775808"`, `true`, `{}`, `[]`,
	}},
	{"2006-01-02 15:04:05", `"2026-11-26 10:15:30"`, []string{
		`"yesterday"`, `""`, `"2026-11-26T10:15:30Z"`, `"2026-11-31 10:15:30"`, `1795688130`, `true`, `{}`, `[]`,
	}},
	{"02 Jan 06 15:04:05 -0700", `"26 Nov 26 11:15:30 +0100"`, []string{
		`"26 Nov 26 11:15:30"`, `"yesterday"`, `1795688130`, `false`, `{}`,
	}},
}

// eventTimeTable has the event time ts and a second, nullable timestamp
// other, both in format.
func eventTimeTable(t *testing.T, format string) *Table {
	t.Helper()
	yaml := `
tables:
  - name: t
    event_time: {field: ts}
    fields:
      - {name: ts, type: timestamp, format: '` + strings.ReplaceAll(format, "'", "''") + `'}
      - {name: other, type: timestamp, format: '` + strings.ReplaceAll(format, "'", "''") + `', nullable: true}
`
	tables, err := Parse([]byte(yaml), "eventtime.yaml")
	if err != nil {
		t.Fatalf("format %q: %v", format, err)
	}
	return tables[0]
}

// TestBadEventTimeEveryFormat: a value that cannot be read as the event
// time is bad_event_time in every timestamp format, not only RFC 3339,
// whether it has the wrong JSON kind, does not parse or does not fit. The
// same value in a timestamp that is not the event time keeps its generic
// reason, so the event-time reason is not given to everything.
func TestBadEventTimeEveryFormat(t *testing.T) {
	want := time.Date(2026, 11, 26, 10, 15, 30, 0, time.UTC).UnixMicro()
	for _, ft := range eventTimeFormats {
		tbl := eventTimeTable(t, ft.format)
		d := NewDecoder(tbl, WithNow(func() time.Time { return testNow }))
		decode := func(rec string) (int64, error) {
			b := NewBatch(tbl, memory.NewGoAllocator())
			defer b.Release()
			return d.Decode(b, []byte(rec), Meta{Source: "s", Partition: "0"})
		}
		t.Run(ft.format+"/good", func(t *testing.T) {
			got, err := decode(`{"ts":` + ft.good + `,"other":` + ft.good + `}`)
			if err != nil || got != want {
				t.Fatalf("Decode(%s) = %d, %v; want %d", ft.good, got, err, want)
			}
		})
		for _, bad := range ft.bad {
			t.Run(ft.format+"/"+bad, func(t *testing.T) {
				_, err := decode(`{"ts":` + bad + `}`)
				var re *RecordError
				if !errors.As(err, &re) || re.Reason != ReasonBadEventTime || re.Field != "ts" {
					t.Fatalf("event time %s: got %v, want %s on field ts", bad, err, ReasonBadEventTime)
				}
				_, err = decode(`{"ts":` + ft.good + `,"other":` + bad + `}`)
				if !errors.As(err, &re) || re.Field != "other" || (re.Reason != ReasonWrongType && re.Reason != ReasonNumberOutOfRange) {
					t.Fatalf("other timestamp %s: got %v, want %s or %s on field other", bad, err, ReasonWrongType, ReasonNumberOutOfRange)
				}
			})
		}
	}
}

// The decoder reads its clock once per nowEvery records; a record that the
// last reading would reject is checked against a fresh one, so a clock that
// moved on since lets it in, and one that did not still keeps it out.
func TestMaxFutureFollowsTheClockBetweenReadings(t *testing.T) {
	tbl := eventTimeTable(t, FormatUnixS)
	now := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	reads := 0
	d := NewDecoder(tbl, WithNow(func() time.Time { reads++; return now }))
	b := NewBatch(tbl, memory.NewGoAllocator())
	defer b.Release()
	record := func(at time.Time) []byte {
		return []byte(`{"ts":` + strconv.FormatInt(at.Unix(), 10) + `}`)
	}
	if _, err := d.Decode(b, record(now), Meta{}); err != nil {
		t.Fatal(err)
	}
	// Within one reading's records the clock is not read again.
	for range nowEvery - 1 {
		if _, err := d.Decode(b, record(now), Meta{}); err != nil {
			t.Fatal(err)
		}
	}
	if reads != 1 {
		t.Fatalf("the clock was read %d times for %d records, want once", reads, nowEvery)
	}
	late := now.Add(tbl.EventTime.MaxFuture + time.Minute)
	_, err := d.Decode(b, record(late), Meta{})
	var re *RecordError
	if !errors.As(err, &re) || re.Reason != ReasonAbsurdEventTime {
		t.Fatalf("an event time past max_future: got %v, want %s", err, ReasonAbsurdEventTime)
	}
	now = now.Add(time.Hour) // the clock moves on; the decoder's reading is old
	before := reads
	if _, err := d.Decode(b, record(late), Meta{}); err != nil {
		t.Fatalf("an event time within max_future of the moved clock: %v", err)
	}
	if reads != before+1 {
		t.Errorf("the clock was read %d times for the record, want once", reads-before)
	}
	if got, want := b.Len(), nowEvery+1; got != want {
		t.Errorf("batch holds %d rows, want %d", got, want)
	}
}
