package ingesttest

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/sluicehq/sluice/ingest"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/schema"
)

// Flush flushes p's buffer, waits for the outcome (failing the test if
// it takes over a minute: the flush is stuck) and settles it as a source
// must; failed is Settled's answer.
func Flush(ctx context.Context, tb testing.TB, p *ingest.Partition) (r ingest.FlushResult, failed bool) {
	tb.Helper()
	results := make(chan ingest.FlushResult, 1)
	if err := p.Flush(ctx, func(r ingest.FlushResult) { results <- r }); err != nil {
		tb.Fatal(err)
	}
	select {
	case r = <-results:
	case <-time.After(time.Minute):
		tb.Fatal("flush did not finish within a minute")
	}
	return r, p.Settled(r)
}

// Commit flushes p's buffer and waits until the flush has committed,
// failing the test otherwise.
func Commit(ctx context.Context, tb testing.TB, p *ingest.Partition) {
	tb.Helper()
	if r, failed := Flush(ctx, tb, p); failed || r.Err != nil {
		tb.Fatalf("flush: %v", r.Err)
	}
}

// Source is the source the Feeder writes as.
const Source = "kafka:events"

// Feeder writes records of one table to partitions "0", "1", ... of
// Source, each from offset 0, through a writer of default settings, and
// commits them when told.
type Feeder struct {
	tb    testing.TB
	parts []*ingest.Partition
	next  []int64
}

// NewFeeder opens partitions partitions of table t in the lake raw; the
// writer is closed after the test.
func NewFeeder(tb testing.TB, raw objstore.Bucket, t *schema.Table, partitions int) *Feeder {
	tb.Helper()
	w, err := ingest.NewWriter(ingest.WriterConfig{}, raw, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(w.Close)
	f := &Feeder{tb: tb}
	for p := range partitions {
		part, _, err := w.OpenPartition(context.Background(), t, Source, fmt.Sprint(p), ingest.StartAt(lake.Position{}, "test"))
		if err != nil {
			tb.Fatal(err)
		}
		f.parts = append(f.parts, part)
		f.next = append(f.next, 0)
	}
	return f
}

// Partitions is how many partitions the feeder writes.
func (f *Feeder) Partitions() int { return len(f.parts) }

// Next is the offset partition p's next record gets: the count of records
// appended to it so far.
func (f *Feeder) Next(p int) int64 { return f.next[p] }

// Append buffers value as partition p's next record, received now.
func (f *Feeder) Append(p int, value []byte) {
	f.parts[p].Append(value, lake.PositionOf(f.next[p]), time.Now())
	f.next[p]++
}

// Commit flushes every partition holding records and waits until each
// flush has committed.
func (f *Feeder) Commit() {
	f.tb.Helper()
	for _, p := range f.parts {
		if p.Pending() > 0 {
			Commit(context.Background(), f.tb, p)
		}
	}
}
