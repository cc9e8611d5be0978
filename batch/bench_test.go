package batch_test

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/batch"
	"github.com/sluicehq/sluice/loadtest/gen"
	"github.com/sluicehq/sluice/objstore/objstoretest"
)

// BenchmarkRun times the whole map/reduce over gzip JSON lines files of
// the sample table, on dense data (2 hours of event time: many rows per
// 1-minute group) and sparse data (40 hours: a few rows per group), like
// the benchmark beside DuckDB in BENCHMARKS.md but small enough to profile:
//
//	go test ./batch -run '^$' -bench Run -benchtime 3x -cpuprofile cpu.out
func BenchmarkRun(b *testing.B) {
	const files, rows = 10, 200_000
	for _, hours := range []float64{2, 40} {
		b.Run(fmt.Sprintf("hours=%g", hours), func(b *testing.B) {
			tbl := inboxEvents(b)
			in := objstoretest.NewLocal(b)
			truth, err := gen.NewTruth(tbl.Rollup.Windows...)
			if err != nil {
				b.Fatal(err)
			}
			span := time.Duration(hours * float64(time.Hour) / files)
			start := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
			for f := range files {
				cfg := gen.Config{Seed: int64(f + 1), Start: start.Add(time.Duration(f) * span), EventsPerSecond: float64(rows/files) / span.Seconds(), Users: 50_000}
				genFile(b, in, fmt.Sprintf("drop/part-%03d.jsonl.gz", f), cfg, rows/files, true, truth)
			}
			b.ResetTimer()
			cpu0 := cpuTime(b)
			for range b.N {
				out := objstoretest.NewLocal(b)
				st, err := batch.Run(b.Context(), batch.Options{Table: tbl, Input: in, Prefix: "drop/", State: out, Summaries: out})
				if err != nil {
					b.Fatal(err)
				}
				if st.Records != rows {
					b.Fatalf("%+v: want %d records", st, rows)
				}
			}
			b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
			// CPU time says more than wall time on a shared machine.
			b.ReportMetric((cpuTime(b)-cpu0).Seconds()/float64(b.N)/(rows/1e6), "cpu-s/Mrows")
		})
	}
}

// cpuTime is the process's user and system time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
