package ingest_test

import (
	"context"
	"log/slog"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/ingest"
	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/internal/testkit/ingesttest"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/loadtest/gen"
	"github.com/sluicehq/sluice/objstore/objstoretest"
)

// BenchmarkPartition times the ingest path of one partition without the
// source: records of the load generator (as `sluice bench ingest` produces
// them) are decoded into the partition's buffer, which is flushed every
// flushEvery records (encoded to Parquet with zstd, written to a local
// directory and committed). It reports CPU-seconds per million records,
// which a busy shared machine inflates less than wall time.
func BenchmarkPartition(b *testing.B) {
	const events, flushEvery = 200_000, 100_000
	g, err := gen.New(gen.Config{Seed: 1, Start: time.Now().UTC().Add(-time.Hour), EventsPerSecond: 1000})
	if err != nil {
		b.Fatal(err)
	}
	values := make([][]byte, events)
	for i := range values {
		v, _, _ := g.Next(nil)
		values[i] = v
	}
	w, err := ingest.NewWriter(ingest.WriterConfig{}, objstoretest.NewLocal(b), slog.New(slog.DiscardHandler), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	ctx := context.Background()
	p, _, err := w.OpenPartition(ctx, testkit.SampleTable(b), "kafka:events", "0", ingest.StartAt(lake.Position{}, "t"))
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	now := time.Now()
	var pos int64
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuSeconds()
	for range b.N {
		for i, v := range values {
			p.AppendRecord(&ingest.Record{Value: v, Pos: lake.PositionOf(pos), Time: now})
			pos++
			if (i+1)%flushEvery == 0 {
				ingesttest.Commit(ctx, b, p)
			}
		}
	}
	cpu := cpuSeconds() - cpu0
	b.ReportMetric(cpu/(float64(b.N)*events/1e6), "cpu-s/M")
	b.ReportMetric(float64(b.N)*events/b.Elapsed().Seconds(), "records/s")
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// Buffering a record (decoding it into the partition's columns) moves
// nothing to the heap in the steady state: the columns grow by doubling,
// which averages out to less than one allocation a record.
func TestAppendRecordDoesNotAllocate(t *testing.T) {
	g, err := gen.New(gen.Config{Seed: 2, Start: time.Now().UTC().Add(-time.Hour), EventsPerSecond: 1000})
	if err != nil {
		t.Fatal(err)
	}
	values := make([][]byte, 4096)
	for i := range values {
		values[i], _, _ = g.Next(nil)
	}
	w, err := ingest.NewWriter(ingest.WriterConfig{}, objstoretest.NewLocal(t), slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	p, _, err := w.OpenPartition(context.Background(), testkit.SampleTable(t), "kafka:events", "0", ingest.StartAt(lake.Position{}, "t"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	now := time.Now()
	var pos int64
	rec := ingest.Record{Time: now}
	allocs := testing.AllocsPerRun(len(values)-1, func() {
		rec.Value, rec.Pos = values[pos%int64(len(values))], lake.PositionOf(pos)
		if !p.AppendRecord(&rec) {
			t.Fatal("record not taken")
		}
		pos++
	})
	if allocs != 0 {
		t.Errorf("AppendRecord allocates %.2f times a record, want 0", allocs)
	}
	if got := p.Pending(); got != pos {
		t.Errorf("partition holds %d records, want %d", got, pos)
	}
}
