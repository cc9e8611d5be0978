package schema

import (
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow/memory"
)

// HostileDir holds the hostile-record corpus: one record per file, named
// <reason>--<what>.json for records the sample events table must refuse with
// that reason, and ok--<what>.json for odd but valid records it must accept.
// The ingest-path test (cmd/sluice/faults_hostile_test.go) runs the same
// files through the writer and the commit log.
const hostileDir = "testdata/hostile"

// TestHostileCorpus decodes every hostile record with the sample events
// table: each refused one with the reason its name gives, never a panic,
// and the accepted ones appended as one row.
func TestHostileCorpus(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(hostileDir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 40 {
		t.Fatalf("only %d hostile records in %s", len(files), hostileDir)
	}
	sort.Strings(files)
	var events *Table
	for _, tb := range SampleTables() {
		if tb.Name == "events" {
			events = tb
		}
	}
	if events == nil {
		t.Fatal("sample table events missing")
	}
	now := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	d := NewDecoder(events, WithNow(func() time.Time { return now }))
	b := NewBatch(events, memory.NewGoAllocator())
	defer b.Release()
	known := map[Reason]bool{}
	for _, r := range Reasons() {
		known[r] = true
	}
	seen := map[Reason]int{}
	for _, path := range files {
		name := strings.TrimSuffix(filepath.Base(path), ".json")
		want, _, ok := strings.Cut(name, "--")
		if !ok {
			t.Fatalf("%s: name must be <reason>--<what>.json", path)
		}
		t.Run(name, func(t *testing.T) {
			value, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			before := b.Len()
			_, err = d.Decode(b, value, Meta{Source: "kafka:events", Partition: "0", Offset: 1})
			if want == "ok" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if b.Len() != before+1 {
					t.Fatalf("appended %d rows, want 1", b.Len()-before)
				}
				return
			}
			if !known[Reason(want)] {
				t.Fatalf("unknown reason %q in the file name", want)
			}
			var re *RecordError
			if !errors.As(err, &re) {
				t.Fatalf("Decode = %v (%T), want a *RecordError with reason %s", err, err, want)
			}
			if string(re.Reason) != want {
				t.Fatalf("reason %s (%v), want %s", re.Reason, re, want)
			}
			if b.Len() != before {
				t.Fatal("a refused record appended a row")
			}
			seen[re.Reason]++
		})
	}
	for _, r := range Reasons() {
		if seen[r] == 0 {
			t.Errorf("no hostile record refused with reason %s", r)
		}
	}
}
