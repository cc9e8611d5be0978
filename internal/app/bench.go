package app

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/sluicehq/sluice/loadtest/bench"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/schema"
)

// BenchAggregateOptions are the flags of `sluice bench aggregate`.
type BenchAggregateOptions struct {
	Lake                    bench.LakeConfig
	S3                      objstore.S3Config // Bucket set: the lake lives in S3
	Rounds                  int
	FoldOnly, Prepare, Keep bool
}

// BenchAggregate times this binary's `aggregate --once` over a prepared
// lake (or, FoldOnly, the in-memory fold alone).
func BenchAggregate(ctx context.Context, c Console, o BenchAggregateOptions) error {
	cfg := o.Lake
	cfg.Table = schema.SampleTables()[0]
	bar := &phaseBar{w: c.Stderr, describe: func(string) string { return "prepare raw objects" }}
	cfg.Progress = func(_ string, done, total int64) { bar.set("", done, total) }
	defer bar.finish()
	if o.FoldOnly {
		return benchFold(ctx, c.Stdout, cfg, bar)
	}
	if o.S3.Bucket != "" {
		if err := o.S3.Validate(); err != nil {
			return UsageError{err}
		}
		s3 := o.S3
		cfg.S3 = &s3
		if cfg.S3.Prefix == "" {
			cfg.S3.Prefix = fmt.Sprintf("sluice-bench-%d", time.Now().UnixNano())
		}
	}
	if cfg.Dir == "" {
		if o.Prepare {
			return Usagef("--prepare-only needs --work-dir")
		}
		dir, err := os.MkdirTemp("", "sluice-bench-agg-")
		if err != nil {
			return err
		}
		cfg.Dir = dir
		if !o.Keep {
			defer os.RemoveAll(dir)
		}
	}
	lk, err := bench.PrepareLake(ctx, cfg)
	bar.finish()
	if err != nil {
		return err
	}
	rows, err := bench.CommittedRows(ctx, lk)
	if err != nil {
		return err
	}
	where := filepath.Join(cfg.Dir, "lake")
	if cfg.S3 != nil {
		where = fmt.Sprintf("s3://%s/%s/raw (%s)", cfg.S3.Bucket, cfg.S3.Prefix, cfg.S3.Endpoint)
	}
	if o.Prepare {
		fmt.Fprintf(c.Stdout, "prepared %d rows in %s; config %s\n", rows, where, lk.Config)
		return nil
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "aggregate pass benchmark (%d cores): %d rows in %s, %s windows, sluice aggregate --once\n", runtime.NumCPU(), rows, where, cfg.Window)
	return benchPasses(ctx, c.Stdout, exe, lk, rows, o.Rounds)
}

// benchFold times the in-memory fold of the objects, in this process.
func benchFold(ctx context.Context, out io.Writer, cfg bench.LakeConfig, bar *phaseBar) error {
	dir, err := os.MkdirTemp("", "sluice-bench-agg-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	b, err := objstore.NewLocal(dir)
	if err != nil {
		return err
	}
	res, err := bench.RunAggregate(ctx, b, cfg.AggregateConfig)
	bar.finish()
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "in-memory fold (micro-benchmark; %d cores, GOMAXPROCS %d), %s windows\n  %s\n", runtime.NumCPU(), runtime.GOMAXPROCS(0), cfg.Window, res)
	return nil
}

// benchPasses runs `aggregate --once` rounds times, each a process of its own.
func benchPasses(ctx context.Context, out io.Writer, exe string, lk bench.Lake, rows int64, rounds int) error {
	for i := range rounds {
		res, err := bench.RunPass(ctx, exe, lk)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "  round %d: %s wall, %.2fM rows/s, %.2f CPU-s per M rows, peak RSS %.0f MiB\n    %s",
			i+1, res.Wall.Round(time.Millisecond), res.RowsPerSecond(rows)/1e6, res.CPUPerMillion(rows), float64(res.PeakRSS)/(1<<20), res.Output)
	}
	return nil
}

// phaseBar is a progress bar per phase of a benchmark; a new phase
// finishes the bar of the one before.
type phaseBar struct {
	w        io.Writer
	describe func(phase string) string
	opts     []progressbar.Option
	bar      *progressbar.ProgressBar
	phase    string
}

func (p *phaseBar) set(phase string, done, total int64) {
	if p.bar != nil && phase != p.phase {
		p.finish()
	}
	if p.bar == nil {
		p.phase = phase
		opts := append([]progressbar.Option{progressbar.OptionSetWriter(p.w), progressbar.OptionSetDescription(p.describe(phase)),
			progressbar.OptionShowCount()}, p.opts...)
		// Rendered at once, so that the bar's clock (and its rate) starts
		// when the phase is first reported, not at its first redraw.
		p.bar = progressbar.NewOptions64(total, append(opts, progressbar.OptionThrottle(200*time.Millisecond),
			progressbar.OptionSetRenderBlankState(true))...)
	}
	_ = p.bar.Set64(done)
}

func (p *phaseBar) finish() {
	if p.bar != nil {
		_ = p.bar.Finish()
		fmt.Fprintln(p.w)
		p.bar = nil
	}
}

// BenchIngestOptions are the flags of `sluice bench ingest`.
type BenchIngestOptions struct {
	Ingest  bench.IngestConfig
	Kinesis bench.KinesisConfig
	Source  string // kafka or kinesis
	WorkDir string // empty: a temporary directory
	Keep    bool
}

// BenchIngest drains generated events from a broker (or a Kinesis stream)
// through an ingester process and reports its rate, CPU and memory.
func BenchIngest(ctx context.Context, c Console, o BenchIngestOptions) error {
	switch o.Source {
	case "kafka":
	case "kinesis":
		if o.Kinesis.Endpoint == "" {
			return Usagef("--source kinesis needs --kinesis-endpoint")
		}
	default:
		return Usagef("--source must be kafka or kinesis, not %q", o.Source)
	}
	cfg := o.Ingest
	if cfg.Partitions <= 0 || cfg.Events <= 0 {
		return Usagef("--partitions and --events must be positive")
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cfg.Binary = exe
	workDir := o.WorkDir
	if workDir == "" {
		if workDir, err = os.MkdirTemp("", "sluice-bench-"); err != nil {
			return err
		}
		if !o.Keep {
			defer os.RemoveAll(workDir)
		}
	}
	if err := os.MkdirAll(workDir, 0o755); err != nil {
		return err
	}
	cfg.WorkDir = workDir
	cfg.Logger = c.Logger
	bar := &phaseBar{w: c.Stderr, describe: func(p string) string { return p },
		opts: []progressbar.Option{progressbar.OptionShowIts(), progressbar.OptionSetItsString("events")}}
	cfg.Progress = bar.set
	var res bench.IngestResult
	if o.Source == "kinesis" {
		res, err = bench.RunIngestKinesis(ctx, cfg, o.Kinesis)
	} else {
		res, err = bench.RunIngest(ctx, cfg)
	}
	bar.finish()
	if err != nil {
		return err
	}
	printIngestBench(c.Stdout, o, cfg, res, workDirNote(workDir, o.Keep))
	return nil
}

func printIngestBench(out io.Writer, o BenchIngestOptions, cfg bench.IngestConfig, res bench.IngestResult, workDir string) {
	server := "broker"
	serverCPU := res.BrokerCPU.Round(10 * time.Millisecond).String()
	if o.Source == "kinesis" {
		server = "stream server"
		if o.Kinesis.ServerPid == 0 {
			serverCPU = "not measured (--kinesis-pid)"
		}
	}
	idle := "not measured (--idle 0)"
	if res.IdleWindow > 0 {
		idle = fmt.Sprintf("%.3f CPU-s/s over %s with nothing to read; net of it over the drain %.2f CPU-s per 1M",
			res.IdleCPUPerSecond(), res.IdleWindow.Round(time.Second), res.NetCPUSecondsPerMillion())
	}
	fmt.Fprintf(out, `ingest benchmark, %s (%d cores, GOMAXPROCS %d)
  events            %d in %d partitions (%.1f MB, %.0f bytes/event)
  produce           %s
  drain             %s
  events/s          %.0f
  MB/s (input)      %.1f
  CPU-s per 1M      %.2f   (ingester user+system %s)
  of it kernel      %s (%d page faults, %s each at most)
  idle CPU          %s
  peak RSS          %.0f MiB
  %-17s %s during the drain; all cores %.0f%% busy
  objects           %d (%.1f MB, %.1fx smaller than input)
  work dir          %s
`, o.Source, runtime.NumCPU(), runtime.GOMAXPROCS(0), res.Events, cfg.Partitions, float64(res.InputBytes)/1e6, float64(res.InputBytes)/float64(max(res.Events, 1)),
		res.Produce.Round(time.Millisecond), res.Drain.Round(time.Millisecond), res.EventsPerSecond(), res.MBPerSecond(),
		res.CPUSecondsPerMillion(), res.CPU.Round(time.Millisecond),
		res.SystemCPU.Round(time.Millisecond), res.PageFaults, faultCost(res), idle, float64(res.PeakRSSBytes)/(1<<20), server+" CPU", serverCPU, 100*res.MachineBusy,
		res.Objects, float64(res.OutputBytes)/1e6, float64(res.InputBytes)/float64(max(res.OutputBytes, 1)), workDir)
}

// faultCost bounds the cost of one page fault from above: the kernel's
// time divided by the faults, as if it had done nothing else.
func faultCost(res bench.IngestResult) time.Duration {
	if res.PageFaults == 0 {
		return 0
	}
	return (res.SystemCPU / time.Duration(res.PageFaults)).Round(100 * time.Nanosecond)
}

func workDirNote(dir string, keep bool) string {
	if keep {
		return dir
	}
	return filepath.Clean(dir) + " (removed; --keep to keep)"
}
