package duckdbcheck

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/sluicehq/sluice/aggregate"
	"github.com/sluicehq/sluice/batch"
	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/loadtest/gen"
	"github.com/sluicehq/sluice/objstore"
)

// TestBatchVersusDuckDB (SLUICE_BENCH_BATCH=1) times `sluice batch run`'s
// map/reduce and DuckDB's read_json on the same gzip JSON lines files, each
// in a child process of its own with 2 threads, so CPU time and peak RSS are
// the engine's: the CPU per row is what the process used between the start
// and the end of the engine's work. The aggregation is by event_type and
// country: count, sum/min/max/avg of amount, latency quantiles, distinct
// users. `sluice batch run` computes it for every window of the table's
// rollup (1m, 5m, 1h, 1d); DuckDB runs twice, once for the 1-minute windows
// alone ("duckdb") and once for all four in one scan, with grouping sets
// ("duckdb-all"), which is the same work as Sluice's. The engines must
// agree on the groups and the row count, per 1-minute window and over all
// windows.
//
//	cd tools/duckdbcheck && SLUICE_BENCH_BATCH=1 CGO_ENABLED=1 go test -run TestBatchVersusDuckDB -v -timeout 30m
//
// SLUICE_BENCH_BATCH_ROWS (default 2,000,000) sets the size, in 40 files;
// SLUICE_BENCH_BATCH_HOURS (default 40) the event time they span, one
// after the other: the fewer hours, the more rows per summary group.
// SLUICE_BENCH_PROFILE_DIR, if set, gets the Sluice child's CPU profile
// (batch-run.cpu.prof; read it with `go tool pprof -focus batch.Run`).
func TestBatchVersusDuckDB(t *testing.T) {
	if os.Getenv("SLUICE_BENCH_BATCH") != "1" {
		t.Skip("benchmark: set SLUICE_BENCH_BATCH=1")
	}
	rows := 2_000_000
	if v := os.Getenv("SLUICE_BENCH_BATCH_ROWS"); v != "" {
		rows, _ = strconv.Atoi(v)
	}
	const files = 40
	hours := 40.0
	if v := os.Getenv("SLUICE_BENCH_BATCH_HOURS"); v != "" {
		hours, _ = strconv.ParseFloat(v, 64)
	}
	span := time.Duration(hours * float64(time.Hour) / files)
	dir := t.TempDir()
	in := filepath.Join(dir, "in", "drop")
	if err := os.MkdirAll(in, 0o755); err != nil {
		t.Fatal(err)
	}
	var size int64
	start := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for f := range files {
		g, err := gen.New(gen.Config{Seed: int64(f + 1), Start: start.Add(time.Duration(f) * span), EventsPerSecond: float64(rows/files) / span.Seconds(), Users: 50_000})
		if err != nil {
			t.Fatal(err)
		}
		var raw bytes.Buffer
		var buf []byte
		for range rows / files {
			v, _, _ := g.Next(buf[:0])
			buf = v
			raw.Write(v)
			raw.WriteByte('\n')
		}
		var z bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&z, gzip.DefaultCompression)
		zw.Write(raw.Bytes())
		zw.Close()
		size += int64(z.Len())
		if err := os.WriteFile(filepath.Join(in, fmt.Sprintf("part-%03d.jsonl.gz", f)), z.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d files, %d rows over %g hours of event time, %.1f MB gzip JSON lines; GOMAXPROCS 2 / DuckDB threads 2", files, rows, hours, float64(size)/1e6)
	results := map[string]childResult{}
	for _, engine := range []string{"sluice", "duckdb", "duckdb-all"} {
		args := []string{"-test.run=^TestBatchVersusDuckDBChild$", "-test.v"}
		if d := os.Getenv("SLUICE_BENCH_PROFILE_DIR"); d != "" && engine == "sluice" {
			args = append(args, "-test.cpuprofile="+filepath.Join(d, "batch-run.cpu.prof"))
		}
		cmd := exec.Command(os.Args[0], args...)
		cmd.Env = append(os.Environ(), "SLUICE_BENCH_CHILD="+engine, "SLUICE_BENCH_DIR="+dir, "GOMAXPROCS=2")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		began := time.Now()
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s: %v\n%s", engine, err, out.String())
		}
		wall := time.Since(began)
		ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		var r childResult
		var engineCPU float64
		for _, line := range strings.Split(out.String(), "\n") {
			if s, ok := strings.CutPrefix(strings.TrimSpace(line), "RESULT "); ok {
				fmt.Sscan(s, &r.groups, &r.rows, &r.seconds, &engineCPU)
			}
			if s, ok := strings.CutPrefix(strings.TrimSpace(line), "ALLWINDOWS "); ok {
				fmt.Sscan(s, &r.allGroups, &r.allRows)
			}
		}
		r.wall, r.cpu, r.rssMB = wall, time.Duration(engineCPU*float64(time.Second)), float64(ru.Maxrss)/1024
		results[engine] = r
		t.Logf("%-10s: %.2f s in the engine (%.2f s wall with process start), %.1f files/s, %.1f MB/s, %.0f rows/s, %.2f CPU-s per million rows (%.2f with process start and the count of its output), peak RSS %.0f MB",
			engine, r.seconds, wall.Seconds(), files/r.seconds, float64(size)/1e6/r.seconds, float64(rows)/r.seconds,
			r.cpu.Seconds()/(float64(rows)/1e6), cpu.Seconds()/(float64(rows)/1e6), r.rssMB)
	}
	s, d, da := results["sluice"], results["duckdb"], results["duckdb-all"]
	if s.rows != int64(rows) || d.rows != int64(rows) || s.groups != d.groups {
		t.Errorf("the engines disagree on 1-minute windows: sluice %d groups of %d rows, duckdb %d groups of %d rows (want %d rows)", s.groups, s.rows, d.groups, d.rows, rows)
	}
	windows := int64(len(testkit.SampleTable(t).Rollup.Windows))
	if s.allRows != windows*int64(rows) || da.allRows != s.allRows || da.allGroups != s.allGroups {
		t.Errorf("the engines disagree over all %d window sizes: sluice %d groups of %d rows, duckdb-all %d groups of %d rows (want %d rows)",
			windows, s.allGroups, s.allRows, da.allGroups, da.allRows, windows*int64(rows))
	}
	t.Logf("CPU per row, sluice / duckdb (1m only): %.2f; sluice / duckdb-all (the same %d window sizes): %.2f",
		s.cpu.Seconds()/d.cpu.Seconds(), windows, s.cpu.Seconds()/da.cpu.Seconds())
}

type childResult struct {
	groups, rows int64
	// Over every window size (sluice and duckdb-all only).
	allGroups, allRows int64
	seconds            float64
	wall, cpu          time.Duration
	rssMB              float64
}

// TestBatchVersusDuckDBChild is one engine's side, run by the benchmark.
func TestBatchVersusDuckDBChild(t *testing.T) {
	engine, dir := os.Getenv("SLUICE_BENCH_CHILD"), os.Getenv("SLUICE_BENCH_DIR")
	if engine == "" {
		t.Skip("run by TestBatchVersusDuckDB")
	}
	tbl := testkit.SampleTable(t)
	began := time.Now()
	cpu0 := processCPU(t)
	var groups, rows int64
	switch engine {
	case "sluice":
		in, err := objstore.NewLocal(filepath.Join(dir, "in"))
		if err != nil {
			t.Fatal(err)
		}
		out, err := objstore.NewLocal(filepath.Join(dir, "sluice-out"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := batch.Run(context.Background(), batch.Options{Table: tbl, Input: in, Prefix: "drop/", State: out, Summaries: out, Parallel: 2}); err != nil {
			t.Fatal(err)
		}
		// Count what was written, as a reader would (outside the timing).
		secs, cpu := time.Since(began).Seconds(), processCPU(t)-cpu0
		var allGroups, allRows int64
		for _, w := range tbl.Rollup.Windows {
			err = out.Iter(context.Background(), "events/"+aggregate.WindowName(w)+"/", func(a objstore.ObjectAttrs) error {
				rc, err := out.Get(context.Background(), a.Key)
				if err != nil {
					return err
				}
				var b bytes.Buffer
				b.ReadFrom(rc)
				rc.Close()
				s, err := aggregate.ReadSummary(bytes.NewReader(b.Bytes()), int64(b.Len()), tbl)
				if err != nil {
					return err
				}
				if w == tbl.Rollup.Windows[0] {
					groups += int64(len(s.Rows))
					rows += s.TotalRows()
				}
				allGroups += int64(len(s.Rows))
				allRows += s.TotalRows()
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		fmt.Printf("RESULT %d %d %f %f\n", groups, rows, secs, cpu.Seconds())
		fmt.Printf("ALLWINDOWS %d %d\n", allGroups, allRows)
		return
	case "duckdb", "duckdb-all":
		db, err := sql.Open("duckdb", "")
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		// UTC: day buckets of a TIMESTAMPTZ follow the session's time zone.
		if _, err := db.Exec(`SET threads=2; SET TimeZone='UTC'`); err != nil {
			t.Fatal(err)
		}
		const measures = `count(*) AS events, sum(amount) AS amount_sum, min(amount) AS amount_min, max(amount) AS amount_max,
         avg(amount) AS amount_avg, approx_quantile(latency_ms, [0.5, 0.9, 0.99]) AS latency,
         approx_count_distinct(user_id) AS users`
		from := fmt.Sprintf(`read_json('%s/in/drop/*.jsonl.gz', format='newline_delimited', compression='gzip',
       columns={ts: 'TIMESTAMPTZ', event_id: 'VARCHAR', user_id: 'VARCHAR', event_type: 'VARCHAR', country: 'VARCHAR',
                device: 'VARCHAR', amount: 'DOUBLE', latency_ms: 'BIGINT', ok: 'BOOLEAN'})`, dir)
		out := filepath.Join(dir, engine+"-out.parquet")
		var q string
		if engine == "duckdb" {
			q = fmt.Sprintf(`COPY (
  SELECT time_bucket(INTERVAL '1 minute', ts) AS window_start, event_type, country, %s
  FROM %s
  GROUP BY ALL) TO '%s' (FORMAT parquet)`, measures, from, out)
		} else {
			// Every window size of the rollup in one scan: a grouping set
			// per window, each bucket column NULL outside its own set.
			// time_bucket's default origin (2000-01-03) is a whole number
			// of days after the Unix epoch, to which Sluice aligns windows.
			var names, buckets, sets []string
			for i, w := range tbl.Rollup.Windows {
				names = append(names, fmt.Sprintf("w%d", i))
				buckets = append(buckets, fmt.Sprintf("time_bucket(to_microseconds(%d), ts) AS w%d", w.Microseconds(), i))
				sets = append(sets, fmt.Sprintf("(w%d, event_type, country)", i))
			}
			q = fmt.Sprintf(`COPY (
  SELECT %s, event_type, country, %s
  FROM (SELECT %s, event_type, country, amount, latency_ms, user_id FROM %s)
  GROUP BY GROUPING SETS (%s)) TO '%s' (FORMAT parquet)`,
				strings.Join(names, ", "), measures, strings.Join(buckets, ", "), from, strings.Join(sets, ", "), out)
		}
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
		secs, cpu := time.Since(began).Seconds(), processCPU(t)-cpu0
		if err := db.QueryRow(fmt.Sprintf(`SELECT count(*), sum(events) FROM '%s'`, out)).Scan(&groups, &rows); err != nil {
			t.Fatal(err)
		}
		if engine == "duckdb-all" {
			fmt.Printf("ALLWINDOWS %d %d\n", groups, rows)
			groups, rows = 0, 0 // the 1-minute figures are duckdb's
		}
		fmt.Printf("RESULT %d %d %f %f\n", groups, rows, secs, cpu.Seconds())
	}
}

// processCPU is the CPU time (user and system, every thread) the process
// has used so far: taken before and after the engine's work, it leaves out
// the process start and the count of the engine's output.
func processCPU(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
