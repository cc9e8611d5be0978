package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/loadtest/bench"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/schema"
)

func newBenchCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Benchmarks of the real binaries, end to end",
	}
	cmd.AddCommand(newBenchIngestCmd(g), newBenchAggregateCmd(g))
	return cmd
}

func newBenchAggregateCmd(g *globals) *cobra.Command {
	cfg := bench.AggregateConfig{}
	cmd := &cobra.Command{
		Use:   "aggregate",
		Short: "Aggregate the raw objects of N events into windows and report rows/s and peak RSS",
		Long: `Writes --events generated events of the sample table through the real ingest
writer into a temporary store (raw Parquet objects, committed), then rolls
them up into --window windows by the table's rollup (event_type, country;
count, sum, min, max, avg, p50/p90/p99, distinct users) and reports rows/s
and the process's peak RSS (which includes the raw objects held in memory).`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, err := os.MkdirTemp("", "sluice-bench-agg-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			b, err := objstore.NewLocal(dir)
			if err != nil {
				return err
			}
			cfg.Table = schema.SampleTables()[0]
			var bar *progressbar.ProgressBar
			cfg.Progress = func(_ string, done, total int64) {
				if bar == nil {
					bar = progressbar.NewOptions64(total, progressbar.OptionSetWriter(g.stderr), progressbar.OptionSetDescription("prepare raw objects"),
						progressbar.OptionShowCount(), progressbar.OptionThrottle(200*time.Millisecond))
				}
				_ = bar.Set64(done)
			}
			res, err := bench.RunAggregate(cmd.Context(), b, cfg)
			if bar != nil {
				_ = bar.Finish()
				fmt.Fprintln(g.stderr)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "aggregate benchmark (%d cores, GOMAXPROCS %d), %s windows\n  %s\n", runtime.NumCPU(), runtime.GOMAXPROCS(0), cfg.Window, res)
			return nil
		},
	}
	f := cmd.Flags()
	f.Int64Var(&cfg.Events, "events", 2_000_000, "events to aggregate")
	f.IntVar(&cfg.Partitions, "partitions", 8, "partitions the events are spread over")
	f.Int64Var(&cfg.Seed, "seed", 1, "generator seed")
	f.DurationVar(&cfg.Window, "window", time.Minute, "window size")
	f.IntVar(&cfg.Workers, "workers", 0, "aggregation goroutines (0: GOMAXPROCS)")
	f.IntVar(&cfg.FlushRecords, "flush-records", 250_000, "records per raw object flush, as an ingester would")
	return cmd
}

func newBenchIngestCmd(g *globals) *cobra.Command {
	cfg := bench.IngestConfig{}
	var keep bool
	var workDir string
	cmd := &cobra.Command{
		Use:   "ingest",
		Short: "Drain N events from a broker process into committed Parquet objects and report events/s, CPU and peak RSS",
		Long: `Starts a broker process (sluice broker), produces --events events of the sample
table (about 210 bytes each, Zipf-skewed user keys), then starts an ingester
process (sluice ingest) and waits until the commit log holds every event.
Reports the drain rate, input MB/s, the ingester's CPU-seconds per million
events and its peak RSS (as the kernel measured them).`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			cfg.Binary = exe
			if workDir == "" {
				workDir, err = os.MkdirTemp("", "sluice-bench-")
				if err != nil {
					return err
				}
				if !keep {
					defer os.RemoveAll(workDir)
				}
			}
			if err := os.MkdirAll(workDir, 0o755); err != nil {
				return err
			}
			cfg.WorkDir = workDir
			cfg.Logger = g.Logger()
			var bar *progressbar.ProgressBar
			var phase string
			cfg.Progress = func(p string, done, total int64) {
				if p != phase {
					if bar != nil {
						_ = bar.Finish()
						fmt.Fprintln(g.stderr)
					}
					phase = p
					bar = progressbar.NewOptions64(total, progressbar.OptionSetWriter(g.stderr),
						progressbar.OptionSetDescription(p), progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString("events"),
						progressbar.OptionThrottle(200*time.Millisecond))
				}
				_ = bar.Set64(done)
			}
			res, err := bench.RunIngest(cmd.Context(), cfg)
			if bar != nil {
				_ = bar.Finish()
				fmt.Fprintln(g.stderr)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, `ingest benchmark (%d cores, GOMAXPROCS %d)
  events            %d in %d partitions (%.1f MB, %.0f bytes/event)
  produce           %s
  drain             %s
  events/s          %.0f
  MB/s (input)      %.1f
  CPU-s per 1M      %.2f   (ingester user+system %s)
  peak RSS          %.0f MiB
  broker CPU        %s during the drain; all cores %.0f%% busy
  objects           %d (%.1f MB, %.1fx smaller than input)
  work dir          %s
`, runtime.NumCPU(), runtime.GOMAXPROCS(0), res.Events, cfg.Partitions, float64(res.InputBytes)/1e6, float64(res.InputBytes)/float64(max(res.Events, 1)),
				res.Produce.Round(time.Millisecond), res.Drain.Round(time.Millisecond), res.EventsPerSecond(), res.MBPerSecond(),
				res.CPUSecondsPerMillion(), res.CPU.Round(time.Millisecond), float64(res.PeakRSSBytes)/(1<<20), res.BrokerCPU.Round(10*time.Millisecond), 100*res.MachineBusy,
				res.Objects, float64(res.OutputBytes)/1e6, float64(res.InputBytes)/float64(max(res.OutputBytes, 1)), workDirNote(workDir, keep))
			return nil
		},
	}
	f := cmd.Flags()
	f.Int64Var(&cfg.Events, "events", 2_000_000, "events to produce and drain")
	f.Int32Var(&cfg.Partitions, "partitions", 8, "partitions of the topic")
	f.IntVar(&cfg.Users, "users", 100_000, "distinct user keys")
	f.Float64Var(&cfg.ZipfS, "zipf", 1.2, "skew of user keys (Zipf s > 1)")
	f.Int64Var(&cfg.Seed, "seed", 1, "generator seed")
	f.StringVar(&cfg.Ingest, "ingest-config", "flush_bytes: 33554432\nflush_interval: 1s\nmemory_budget: 134217728", "the ingester's `ingest:` section (YAML)")
	f.StringVar(&workDir, "work-dir", "", "keep the broker log, objects and logs here (default: a temporary directory, removed)")
	f.BoolVar(&keep, "keep", false, "keep the temporary work directory")
	return cmd
}

func workDirNote(dir string, keep bool) string {
	if keep {
		return dir
	}
	return filepath.Clean(dir) + " (removed; --keep to keep)"
}
