// Command aggbench times Sluice's aggregation pass and DuckDB's equivalent
// query on the same committed raw objects, in one run, round by round
// (interleaved, so both see the same machine), each as a process of its own
// measured by the kernel: wall time, user+system CPU, peak RSS.
//
// The work is the sample table rolled up into --window windows by
// (event_type, country): count, sum, min, max and avg of amount, the 0.5,
// 0.9 and 0.99 quantiles of latency_ms and distinct users, written as
// Parquet. Sluice's pass is `sluice aggregate --once` (mergeable sketches:
// DDSketch, HyperLogLog); DuckDB's query uses its approximate counterparts
// (approx_quantile, approx_count_distinct) with 2 threads, reading exactly
// the committed files (`sluice files`) and writing its result with COPY.
//
//	make bench-aggregate-duckdb
//	go run ./aggbench --sluice ../../bin/sluice --events 2000000 --rounds 3
//
// With --sluice-before, a second binary's pass is timed in every round as
// well (before the other), for before and after figures from one run.
package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	_ "github.com/duckdb/duckdb-go/v2" // the "duckdb" database/sql driver

	"github.com/sluicehq/sluice/loadtest/bench"
)

func main() {
	var (
		sluiceBin = flag.String("sluice", "", "the sluice binary (required)")
		beforeBin = flag.String("sluice-before", "", "another sluice binary (say, of the commit before a change) to time in the same rounds")
		events    = flag.Int64("events", 2_000_000, "events in the lake")
		eps       = flag.Float64("events-per-second", 50, "events per second of event time (50: ~52,000 1-minute groups for 2M events)")
		window    = flag.Duration("window", time.Minute, "window size")
		rounds    = flag.Int("rounds", 3, "rounds (each: one Sluice pass, one DuckDB query)")
		threads   = flag.Int("threads", 2, "DuckDB threads")
		workDir   = flag.String("work-dir", "", "keep the lake here (default: a temporary directory, removed)")

		child = flag.Bool("duckdb-child", false, "internal: run the DuckDB query once (files in -files, result to -out)")
		files = flag.String("files", "", "internal: file with one Parquet path per line")
		out   = flag.String("out", "", "internal: result Parquet file")
	)
	flag.Parse()
	ctx := context.Background()
	if *child {
		if err := runDuckDB(ctx, *files, *out, *window, *threads); err != nil {
			log.Fatal(err)
		}
		return
	}
	if *sluiceBin == "" {
		log.Fatal("-sluice is required")
	}
	if err := run(ctx, *sluiceBin, *beforeBin, *workDir, *events, *eps, *window, *rounds, *threads); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, sluiceBin, beforeBin, dir string, events int64, eps float64, window time.Duration, rounds, threads int) error {
	sluiceBin, err := filepath.Abs(sluiceBin)
	if err != nil {
		return err
	}
	if beforeBin != "" {
		if beforeBin, err = filepath.Abs(beforeBin); err != nil {
			return err
		}
	}
	if dir == "" {
		d, err := os.MkdirTemp("", "sluice-aggbench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	prep := exec.CommandContext(ctx, sluiceBin, "bench", "aggregate", "--prepare-only", "--work-dir", dir,
		"--events", fmt.Sprint(events), "--events-per-second", fmt.Sprint(eps), "--window", window.String())
	prep.Stdout, prep.Stderr = os.Stdout, os.Stderr
	if err := prep.Run(); err != nil {
		return fmt.Errorf("prepare: %w", err)
	}
	lk := bench.Lake{Dir: dir, Config: filepath.Join(dir, "sluice.yaml"), Events: events, Window: window}
	rows, err := bench.CommittedRows(ctx, lk)
	if err != nil {
		return err
	}
	list, err := exec.CommandContext(ctx, sluiceBin, "files", "events", "--config", lk.Config, "--format", "list").Output()
	if err != nil {
		return fmt.Errorf("sluice files: %w", err)
	}
	listFile := filepath.Join(dir, "files.txt")
	if err := os.WriteFile(listFile, list, 0o644); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	fmt.Printf("aggregation, Sluice vs DuckDB (%d cores; %s): %d rows in %d committed files, %s windows by (event_type, country)\n",
		runtime.NumCPU(), time.Now().UTC().Format(time.DateOnly), rows, strings.Count(string(list), "\n"), window)
	var sl, bf, dk []bench.ProcResult
	for i := range rounds {
		if beforeBin != "" {
			b, err := bench.RunPass(ctx, beforeBin, lk)
			if err != nil {
				return err
			}
			bf = append(bf, b)
			fmt.Printf("  round %d: sluice (before) %s\n", i+1, line(b, rows))
		}
		s, err := bench.RunPass(ctx, sluiceBin, lk)
		if err != nil {
			return err
		}
		d, err := bench.RunProcess(ctx, self, "-duckdb-child", "-files", listFile, "-out", filepath.Join(dir, "duckdb.parquet"),
			"-window", window.String(), "-threads", fmt.Sprint(threads))
		if err != nil {
			return err
		}
		sl, dk = append(sl, s), append(dk, d)
		fmt.Printf("  round %d: sluice %s, duckdb %s\n", i+1, line(s, rows), line(d, rows))
	}
	ms, md := median(sl), median(dk)
	fmt.Printf("median of %d rounds\n  sluice aggregate --once  %s\n  duckdb (%d threads)       %s\n  ratio (rows/s)           %.2fx DuckDB\n",
		rounds, line(ms, rows), threads, line(md, rows), md.Wall.Seconds()/ms.Wall.Seconds())
	if beforeBin != "" {
		mb := median(bf)
		fmt.Printf("  sluice (before)          %s\n  ratio (rows/s), before   %.2fx DuckDB\n",
			line(mb, rows), md.Wall.Seconds()/mb.Wall.Seconds())
	}
	return nil
}

func line(r bench.ProcResult, rows int64) string {
	return fmt.Sprintf("%.2fM rows/s (%s), %.2f CPU-s/M rows, peak RSS %.0f MiB",
		r.RowsPerSecond(rows)/1e6, r.Wall.Round(time.Millisecond), r.CPUPerMillion(rows), float64(r.PeakRSS)/(1<<20))
}

// median takes each figure's median on its own.
func median(rs []bench.ProcResult) bench.ProcResult {
	pick := func(f func(bench.ProcResult) int64) int64 {
		v := make([]int64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		slices.Sort(v)
		return v[(len(v)-1)/2]
	}
	return bench.ProcResult{
		Wall:    time.Duration(pick(func(r bench.ProcResult) int64 { return int64(r.Wall) })),
		CPU:     time.Duration(pick(func(r bench.ProcResult) int64 { return int64(r.CPU) })),
		PeakRSS: pick(func(r bench.ProcResult) int64 { return r.PeakRSS }),
	}
}

func runDuckDB(ctx context.Context, listFile, out string, window time.Duration, threads int) error {
	data, err := os.ReadFile(listFile)
	if err != nil {
		return err
	}
	var quoted []string
	for _, f := range strings.Fields(string(data)) {
		quoted = append(quoted, "'"+strings.ReplaceAll(f, "'", "''")+"'")
	}
	if len(quoted) == 0 {
		return fmt.Errorf("%s: no files", listFile)
	}
	db, err := sql.Open("duckdb", "")
	if err != nil {
		return err
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, fmt.Sprintf("SET threads = %d", threads)); err != nil {
		return err
	}
	q := fmt.Sprintf(`COPY (
  SELECT time_bucket(INTERVAL '%d microseconds', ts) AS window_start, event_type, country,
         count(*) AS events, sum(amount) AS amount_sum, min(amount) AS amount_min, max(amount) AS amount_max,
         avg(amount) AS amount_avg, approx_quantile(latency_ms, [0.5, 0.9, 0.99]) AS latency,
         approx_count_distinct(user_id) AS users
  FROM read_parquet([%s])
  GROUP BY ALL
) TO '%s' (FORMAT parquet)`, window.Microseconds(), strings.Join(quoted, ", "), strings.ReplaceAll(out, "'", "''"))
	if _, err := conn.ExecContext(ctx, q); err != nil {
		return fmt.Errorf("duckdb: %w", err)
	}
	return nil
}
