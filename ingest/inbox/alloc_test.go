package inbox_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/sluicehq/sluice/ingest"
	"github.com/sluicehq/sluice/ingest/inbox"
	"github.com/sluicehq/sluice/objstore/objstoretest"
)

// Locating every line in its file (for dead letters) costs the read path
// no allocation per line: reading a JSON lines split of 20,000 lines
// allocates about as much as one of 2,000.
func TestEachRecordAllocatesNothingPerLine(t *testing.T) {
	b := objstoretest.NewLocal(t)
	tbl := testTables(t)["ev"]
	allocs := func(lines int) float64 {
		var data bytes.Buffer
		for i := range lines {
			fmt.Fprintf(&data, `{"ts":"2026-11-20T10:00:00Z","id":"l%d","user":"u","amount":1}`+"\n", i)
		}
		key := fmt.Sprintf("in/ev/alloc-%d.jsonl", lines)
		put(t, b, key, data.Bytes())
		e := inbox.Entry{Key: key, Size: int64(data.Len()), Format: "jsonl", Compression: inbox.CompNone}
		sp := inbox.Split{Index: 0, Start: 0, End: e.Size}
		var seen int
		var last ingest.Location
		n := testing.AllocsPerRun(3, func() {
			seen = 0
			_, _, err := inbox.EachRecord(context.Background(), b, tbl, e, sp, func(_ []byte, _ int64, at ingest.Location) error {
				seen++
				last = at
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
		if seen != lines || last.Line != int64(lines) || last.File != key {
			t.Fatalf("read %d lines, the last at %+v; want %d, the last at line %d of %s", seen, last, lines, lines, key)
		}
		return n
	}
	small, large := allocs(2_000), allocs(20_000)
	t.Logf("allocations: %v for 2,000 lines, %v for 20,000", small, large)
	if large-small > 100 {
		t.Errorf("allocations grow with the lines read: %v for 2,000, %v for 20,000", small, large)
	}
}
