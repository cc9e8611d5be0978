package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/sluicehq/sluice/internal/config"
	"github.com/sluicehq/sluice/loadtest/harness"
	"github.com/sluicehq/sluice/objstore/client"
	"github.com/sluicehq/sluice/schema"
)

// LoadtestOptions are the flags of `sluice loadtest`.
type LoadtestOptions struct {
	Embedded   bool
	ConfigPath string
	Brokers    string
	BrokersSet bool // --brokers given: it overrides the config's kafka.brokers
	DataDir    string
	KeepData   bool
	HTTPAddr   string
	Partitions int32
	FlushEvery time.Duration
	FlushIdle  time.Duration
	AggEvery   time.Duration
	MetricsURL string
	IngestPID  int
	ReportJSON string
	ReportHTML string
	Quiet      bool
	Harness    harness.Config
}

// validate checks the flags before anything starts.
func (o *LoadtestOptions) validate() error {
	if o.Embedded == (o.ConfigPath != "") {
		if !o.Embedded && o.BrokersSet {
			return Usagef("--brokers needs --config: the load test verifies what the pipeline committed, and only sluice.yaml says where (store, summary_store); --brokers overrides its kafka.brokers")
		}
		return Usagef("choose one of --embedded (a stack in this process) and --config sluice.yaml (a running pipeline)")
	}
	if o.Harness.Duration == 0 && o.Harness.Events == 0 {
		o.Harness.Duration = time.Minute
	}
	if o.Partitions < 1 {
		return Usagef("--partitions must be at least 1")
	}
	check := o.Harness.WithDefaults()
	check.Brokers = []string{"set later"} // from the stack or the config
	if err := check.Validate(); err != nil {
		return UsageError{err}
	}
	return nil
}

// Loadtest produces generated events, verifies what the pipeline (the
// embedded stack, or the one a config describes) committed and summarised,
// and reports; it fails if anything differs.
func Loadtest(ctx context.Context, c Console, o LoadtestOptions) error {
	if err := o.validate(); err != nil {
		return err
	}
	env := harness.Env{Logger: c.Logger}
	if !o.Quiet {
		env.Progress = c.Stderr
	}
	cfg := o.Harness
	var st *Stack
	if o.Embedded {
		dir, cleanup, err := loadtestDataDir(c, o)
		if err != nil {
			return err
		}
		defer cleanup()
		if st, err = startLoadtestStack(ctx, c, o, dir, &cfg, &env); err != nil {
			return err
		}
		defer st.Close()
	} else if err := externalLoadtestEnv(ctx, c, o, &cfg, &env); err != nil {
		return err
	}
	if !cfg.NoSummaries && env.Table.Rollup != nil && cfg.LateBy >= env.Table.Rollup.LateHorizon {
		return Usagef("--late-by %s reaches past the rollup's late_horizon %s: those events would be counted as too late, not summarised", cfg.LateBy, env.Table.Rollup.LateHorizon)
	}
	rep, err := runHarness(ctx, c, cfg, env, st)
	if err != nil {
		return err
	}
	rep.Text(c.Stdout)
	if o.ReportJSON != "" {
		if err := writeReport(o.ReportJSON, rep.JSON); err != nil {
			return err
		}
	}
	if o.ReportHTML != "" {
		if err := writeReport(o.ReportHTML, rep.HTML); err != nil {
			return err
		}
	}
	if !rep.OK() {
		return errors.New("load test FAILED: the verifier found differences (listed above)")
	}
	return nil
}

// runHarness runs the load test; with the embedded stack, in one group
// with it: the harness first, then the stack, which stops once the harness
// is done. The stack's errors are logged; the verdict is the harness's.
func runHarness(ctx context.Context, c Console, cfg harness.Config, env harness.Env, st *Stack) (*harness.Report, error) {
	var rep *harness.Report
	g := newGroup(ctx)
	g.add(ctx, func(ctx context.Context) (err error) {
		rep, err = harness.Run(ctx, cfg, env)
		return err
	})
	if st != nil {
		st.addTo(ctx, g, func(err error) error {
			if err != nil {
				c.Logger.Error("embedded stack", "err", err)
			}
			return nil
		})
	}
	return rep, g.run()
}

// loadtestDataDir is --data-dir, or a temporary directory that cleanup
// removes unless --keep-data.
func loadtestDataDir(c Console, o LoadtestOptions) (dir string, cleanup func(), err error) {
	if o.DataDir != "" {
		return o.DataDir, func() {}, nil
	}
	dir, err = os.MkdirTemp("", "sluice-loadtest-")
	if err != nil {
		return "", nil, err
	}
	if o.KeepData {
		fmt.Fprintf(c.Stderr, "data kept in %s\n", dir)
		return dir, func() {}, nil
	}
	return dir, func() { os.RemoveAll(dir) }, nil
}

// loadtestMemoryBudget is the embedded ingester's memory_budget: half the
// default, so that the whole process (broker, ingester, aggregator,
// producers and the verifier's truth) keeps to 512 MiB flat out. Two
// flushes of flush_bytes still fit in it.
const loadtestMemoryBudget = 64 << 20

// startLoadtestStack starts the embedded stack in dir and points the
// harness at it.
func startLoadtestStack(ctx context.Context, c Console, o LoadtestOptions, dir string, cfg *harness.Config, env *harness.Env) (*Stack, error) {
	logger := c.Logger
	st, err := StartStack(ctx, logger, StackOptions{DataDir: dir, KafkaAddr: "127.0.0.1:0", HTTPAddr: o.HTTPAddr,
		Partitions: o.Partitions, FlushEvery: o.FlushEvery, FlushIdle: o.FlushIdle, AggInterval: o.AggEvery, Group: "sluice-loadtest",
		MemoryBudget: loadtestMemoryBudget})
	if err != nil {
		return nil, err
	}
	setMemoryLimit(3*st.Config.Ingest.MemoryBudget+256<<20, logger)
	raw, err := client.NewBucket(ctx, "raw", st.Config.Store, logger, nil)
	if err != nil {
		st.Close()
		return nil, err
	}
	sums, err := client.NewBucket(ctx, "summary", *st.Config.SummaryStore, logger, nil)
	if err != nil {
		st.Close()
		return nil, err
	}
	cfg.Brokers = []string{st.BrokerAddr()}
	env.Mode = "embedded dev stack in this process"
	env.Table, env.Raw, env.Summaries = st.Events, raw, sums
	env.IdleTimeout = st.Config.Aggregate.IdleTimeout
	env.ConsumerLag = harness.GatherLag(st.Registry)
	env.Aggregator = harness.GatherAggregator(st.Registry, st.Events.Name)
	env.ProcPID, env.ProcLabel = os.Getpid(), "the whole process: broker, ingester, aggregator, producers, verifier"
	fmt.Fprintf(c.Stderr, "embedded stack: broker %s, data in %s, metrics http://%s/metrics\n", st.BrokerAddr(), dir, st.HTTPAddr())
	return st, nil
}

// externalLoadtestEnv points the harness at the pipeline of --config.
func externalLoadtestEnv(ctx context.Context, c Console, o LoadtestOptions, cfg *harness.Config, env *harness.Env) error {
	fc, err := config.Load(o.ConfigPath)
	if err != nil {
		return err
	}
	cfg.Brokers = fc.Kafka.Brokers
	if o.BrokersSet || len(cfg.Brokers) == 0 {
		cfg.Brokers = splitList(o.Brokers)
	}
	var table *schema.Table
	for _, t := range fc.Tables {
		if t.Topic == cfg.Topic {
			table = t
		}
	}
	if table == nil {
		return Usagef("no table in %s reads topic %q", o.ConfigPath, cfg.Topic)
	}
	raw, err := client.NewBucket(ctx, "raw", fc.Store, c.Logger, nil)
	if err != nil {
		return err
	}
	env.Raw = raw
	if fc.SummaryStore != nil {
		if env.Summaries, err = client.NewBucket(ctx, "summary", *fc.SummaryStore, c.Logger, nil); err != nil {
			return err
		}
	}
	env.Mode = "external pipeline (" + o.ConfigPath + ")"
	env.Table = table
	env.IdleTimeout = fc.Aggregate.IdleTimeout
	if urls := splitList(o.MetricsURL); len(urls) > 0 {
		env.ConsumerLag = sumLag(urls)
	}
	if o.IngestPID > 0 {
		env.ProcPID, env.ProcLabel = o.IngestPID, "the ingester process"
	}
	return nil
}

func writeReport(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("write report %s: %w", path, err)
	}
	return f.Close()
}

// sumLag reads the consumer lag of every ingester (one /metrics URL each)
// and sums it; a reading is only valid when every ingester answered.
func sumLag(urls []string) harness.MetricLag {
	lags := make([]harness.MetricLag, len(urls))
	for i, u := range urls {
		lags[i] = harness.ScrapeLag(u)
	}
	return func(ctx context.Context) (float64, bool) {
		var sum float64
		for _, lag := range lags {
			v, ok := lag(ctx)
			if !ok {
				return 0, false
			}
			sum += v
		}
		return sum, true
	}
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
