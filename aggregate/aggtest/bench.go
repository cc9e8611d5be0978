package aggtest

import (
	"context"
	"fmt"
	"runtime"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/aggregate"
	"github.com/sluicehq/sluice/schema"
)

// BenchResult is what BenchAggregate measured.
type BenchResult struct {
	Objects    int
	Rows       int64 // rows read
	Groups     int   // summary rows produced
	Workers    int
	Duration   time.Duration
	RowsPerSec float64
	// PeakRSSBytes is the process's peak resident set so far (getrusage),
	// including whatever the caller holds, such as the objects themselves.
	PeakRSSBytes int64
}

func (r BenchResult) String() string {
	return fmt.Sprintf("%d objects, %d rows -> %d groups with %d workers in %s: %.2fM rows/s, peak RSS %d MiB",
		r.Objects, r.Rows, r.Groups, r.Workers, r.Duration.Round(time.Millisecond), r.RowsPerSec/1e6, r.PeakRSSBytes>>20)
}

// BenchAggregate aggregates raw objects (whole Parquet files, e.g. read
// from a bucket after a real ingest) into windows of size window over all
// event time (2000-01-01 to 2100-01-01), with workers goroutines (0:
// GOMAXPROCS), and reports the throughput. It is the reusable part of
// `sluice bench aggregate` and of BenchmarkAggregate.
func BenchAggregate(ctx context.Context, t *schema.Table, window time.Duration, objects [][]byte, workers int) (BenchResult, error) {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	from := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	to := time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)
	start := time.Now()
	s, st, err := aggregate.AggregateObjects(ctx, t, window, from, to, workers, objects)
	d := time.Since(start)
	if err != nil {
		return BenchResult{}, err
	}
	res := BenchResult{Objects: len(objects), Rows: st.Rows, Groups: len(s.Rows), Workers: workers, Duration: d,
		RowsPerSec: float64(st.Rows) / d.Seconds(), PeakRSSBytes: peakRSS()}
	return res, nil
}

func peakRSS() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	if runtime.GOOS == "darwin" {
		return ru.Maxrss // bytes there
	}
	return ru.Maxrss << 10 // KiB on Linux
}
