package verify_test

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/loadtest/verify"
	"github.com/sluicehq/sluice/objstore/objstoretest"
)

// metaRow is the part of a raw row the verifier reads.
type metaRow struct {
	Source    string `parquet:"_source"`
	Partition string `parquet:"_partition"`
	Offset    int64  `parquet:"_offset"`
	EventID   string `parquet:"event_id"`
}

// Two million committed records, event ids included, must verify in well
// under 200 MB. The objects carry only the columns the verifier reads
// (writing 2M full events through the decoder takes minutes under -race);
// the commit records are real and committed through the commit log.
func TestReadCommittedTwoMillionRecordsBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 2M rows")
	}
	const (
		partitions = 8
		perPart    = 256_000 // 2,048,000 in all
		perObject  = 8_000
		badEvery   = 200
	)
	ctx := context.Background()
	b := objstoretest.NewLocal(t)
	log := lake.NewCommitLog(b)
	exp := verify.NewExpected()
	writeStart := time.Now()
	rows := make([]metaRow, 0, perObject)
	for p := range partitions {
		part := strconv.Itoa(p)
		if _, err := log.Open(ctx, table, source, part, "memory-test", func(context.Context) (lake.Genesis, error) { return lake.Genesis{}, nil }); err != nil {
			t.Fatal(err)
		}
		for first := int64(0); first < perPart; first += perObject {
			rows = rows[:0]
			var dead bytes.Buffer
			var deadN int64
			for o := first; o < first+perObject; o++ {
				if o%badEvery == badEvery-1 {
					fmt.Fprintf(&dead, `{"source":%q,"partition":%q,"offset":%d,"reason":"malformed_json"}`+"\n", source, part, o)
					deadN++
					exp.AddBad(part, o)
					continue
				}
				rows = append(rows, metaRow{Source: source, Partition: part, Offset: o, EventID: fmt.Sprintf("%s-%d", part, o)})
				exp.AddGood(part, o)
			}
			var buf bytes.Buffer
			if err := parquet.Write(&buf, rows); err != nil {
				t.Fatal(err)
			}
			name := fmt.Sprintf("%s-%020d", part, first)
			rawKey := table + "/dt=2026-03-01/hour=10/" + name + ".parquet"
			deadKey := "_deadletter/" + table + "/dt=2026-03-01/hour=10/" + name + ".jsonl"
			for key, data := range map[string][]byte{rawKey: buf.Bytes(), deadKey: dead.Bytes()} {
				if err := b.Put(ctx, key, bytes.NewReader(data), int64(len(data))); err != nil {
					t.Fatal(err)
				}
			}
			err := log.Commit(ctx, lake.CommitRecord{
				Table: table, Source: source, Partition: part, Seq: first/perObject + 1, Kind: lake.LinkData,
				First: lake.PositionOf(first), Next: lake.PositionOf(first + perObject),
				Records: int64(len(rows)), DeadLetters: deadN, Writer: "memory-test",
				Objects: []lake.CommittedObject{
					{Key: rawKey, Kind: lake.KindRaw, Rows: int64(len(rows)), Size: int64(buf.Len()), Checksum: lake.Checksum(buf.Bytes())},
					{Key: deadKey, Kind: lake.KindDeadLetter, Rows: deadN, Size: int64(dead.Len()), Checksum: lake.Checksum(dead.Bytes())},
				},
			})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	rows = nil
	t.Logf("wrote %d records in %s", partitions*perPart, time.Since(writeStart).Round(time.Millisecond))

	runtime.GC()
	base := testkit.HeapObjects()
	start := time.Now()
	var rep verify.Report
	var readErr error
	peak := testkit.PeakHeap(func() {
		var got *verify.Committed
		got, readErr = verify.ReadCommitted(ctx, b, table, verify.Options{EventIDColumn: "event_id"})
		if readErr == nil {
			rep = verify.Compare(exp, got)
		}
	})
	if readErr != nil {
		t.Fatal(readErr)
	}
	used := int64(peak) - int64(base)
	t.Logf("verified %d records in %s; peak heap %.0f MB above the %.0f MB before\n%s",
		partitions*perPart, time.Since(start).Round(time.Millisecond), float64(used)/1e6, float64(base)/1e6, rep)
	if !rep.OK() || rep.CommittedRows+rep.CommittedDeadLetters != partitions*perPart || rep.DuplicateEventIDs != 0 {
		t.Fatalf("want a clean report of %d records", partitions*perPart)
	}
	if used > 120<<20 {
		t.Fatalf("verifying 2M records took %d bytes of heap, want well under 200 MB (<= 120 MiB)", used)
	}
}
