package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/loadtest/harness"
	"github.com/sluicehq/sluice/schema"
)

type loadtestOptions struct {
	embedded   bool
	configPath string
	brokers    string
	dataDir    string
	keepData   bool
	httpAddr   string
	partitions int32
	flushEvery time.Duration
	aggEvery   time.Duration
	metricsURL string
	ingestPID  int
	reportJSON string
	reportHTML string
	quiet      bool
	cfg        harness.Config
}

func newLoadtestCmd(g *globals) *cobra.Command {
	var o loadtestOptions
	cmd := &cobra.Command{
		Use:   "loadtest (--embedded | --config sluice.yaml)",
		Short: "Produce generated events at a rate, verify nothing was lost, duplicated or summarised wrong, and report",
		Long: `Produces events of the sample table (with late events and malformed records of
every dead-letter kind) to Kafka at --rate events/s (0: as fast as the broker
takes them) for --duration or --events, watches the pipeline while it works,
then proves from the object stores that every acknowledged record is committed
exactly once (malformed ones in the dead-letter area, with the right reason)
and that every measure of every closed window's summary matches what the
generators produced, and reports rates, lag, latencies, CPU and memory. Exits 1
if anything differs.

--embedded starts the dev stack in this process (broker, ingester, aggregator;
in a temporary --data-dir unless given). --config tests a running pipeline:
it produces to kafka.brokers and verifies store and summary_store; run it
against a fresh topic and table, since records it did not produce count as
unexpected.`,
		Example: `  sluice loadtest --embedded --duration 60s --rate 20000 --report-html report.html
  sluice loadtest --config sluice.yaml --rate 50000 --duration 5m --metrics-url http://127.0.0.1:8080/metrics
  docker compose --profile loadtest up loadtest   # the same against the compose stack`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.embedded == (o.configPath != "") {
				if !o.embedded && cmd.Flags().Changed("brokers") {
					return usageErrorf("--brokers needs --config: the load test verifies what the pipeline committed, and only sluice.yaml says where (store, summary_store); --brokers overrides its kafka.brokers")
				}
				return usageErrorf("choose one of --embedded (a stack in this process) and --config sluice.yaml (a running pipeline)")
			}
			if o.cfg.Duration == 0 && o.cfg.Events == 0 {
				o.cfg.Duration = time.Minute
			}
			if o.partitions < 1 {
				return usageErrorf("--partitions must be at least 1")
			}
			check := o.cfg.WithDefaults()
			check.Brokers = []string{"set later"} // from the stack or the config
			if err := check.Validate(); err != nil {
				return usageError{err}
			}
			return runLoadtest(cmd.Context(), g, o, cmd.Flags().Changed("brokers"))
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.embedded, "embedded", false, "start the embedded dev stack (broker, ingester, aggregator) in this process and test it")
	f.StringVarP(&o.configPath, "config", "c", "", "test the pipeline this sluice.yaml describes (Kafka, store, summary_store)")
	f.StringVar(&o.brokers, "brokers", "127.0.0.1:9092", "Kafka seed brokers, comma separated (with --config: default kafka.brokers)")
	f.StringVar(&o.cfg.Topic, "topic", harness.DefaultTopic, "topic of the sample table")
	f.Float64Var(&o.cfg.Rate, "rate", 20000, "target events per second (0: as fast as the broker takes them)")
	f.DurationVar(&o.cfg.Duration, "duration", 0, "how long to produce (default 1m unless --events)")
	f.Int64Var(&o.cfg.Events, "events", 0, "how many records to produce (whichever of --duration and --events comes first)")
	f.IntVar(&o.cfg.Producers, "producers", 0, "parallel producers, each with its own client (0: one per 100k events/s)")
	f.IntVar(&o.cfg.Users, "users", harness.DefaultUsers, "distinct user_id values (the key cardinality)")
	f.Float64Var(&o.cfg.ZipfS, "zipf", harness.DefaultZipfS, "Zipf skew of user popularity (> 1)")
	f.Float64Var(&o.cfg.LateShare, "late-share", 0.01, "share of events with an event time in the past")
	f.DurationVar(&o.cfg.LateBy, "late-by", 3*time.Minute, "how far in the past late events are, at most (beyond the allowed lateness, so that late data recomputes closed windows)")
	f.Float64Var(&o.cfg.NullShare, "null-share", 0.02, "share of events with a null country (and, independently, device)")
	f.Float64Var(&o.cfg.BadShare, "bad-share", 0.001, "share of malformed records, every dead-letter kind in turn")
	f.IntVar(&o.cfg.EventBytes, "event-size", 0, "pad events to about this many bytes (0: natural, about 230)")
	f.Int64Var(&o.cfg.Seed, "seed", 1, "generator seed")
	f.TimeVar(&o.cfg.Start, "start", time.Time{}, []string{time.RFC3339Nano}, "pin the first event time (RFC 3339, in the past), e.g. 2026-01-01T22:59:45Z to cross an hour and close the day's windows; default: the wall clock")
	f.DurationVar(&o.cfg.DrainTimeout, "drain-timeout", harness.DefaultDrainTimeout, "how long to wait for everything to be committed")
	f.DurationVar(&o.cfg.CatchUpTimeout, "catchup-timeout", harness.DefaultCatchUpTimeout, "how long to wait for the aggregator to summarise every closed window")
	f.BoolVar(&o.cfg.NoSummaries, "no-summaries", false, "verify raw data only")
	f.StringVar(&o.reportJSON, "report-json", "", "write the report as JSON to this file")
	f.StringVar(&o.reportHTML, "report-html", "", "write the report as an HTML page with charts to this file")
	f.BoolVar(&o.quiet, "quiet", false, "no status line while running")
	f.StringVar(&o.dataDir, "data-dir", "", "embedded: where the broker log and the stores live (default: a temporary directory, removed afterwards)")
	f.BoolVar(&o.keepData, "keep-data", false, "embedded: keep the temporary data directory")
	f.StringVar(&o.httpAddr, "http-addr", "127.0.0.1:0", "embedded: address of /metrics")
	f.Int32Var(&o.partitions, "partitions", 4, "embedded: partitions of the topic")
	f.DurationVar(&o.flushEvery, "flush-interval", 5*time.Second, "embedded: flush each partition at least this often")
	f.DurationVar(&o.aggEvery, "aggregate-interval", 10*time.Second, "embedded: how often the aggregator runs")
	f.StringVar(&o.metricsURL, "metrics-url", "", "with --config: the ingesters' /metrics, comma separated, for their consumer lag (summed)")
	f.IntVar(&o.ingestPID, "ingester-pid", 0, "with --config: the ingester's process id, for its CPU and memory (Linux /proc)")
	return cmd
}

func runLoadtest(ctx context.Context, g *globals, o loadtestOptions, brokersSet bool) error {
	logger := g.Logger()
	var env harness.Env
	cfg := o.cfg
	if !o.quiet {
		env.Progress = g.stderr
	}
	env.Logger = logger
	if o.embedded {
		dir := o.dataDir
		if dir == "" {
			tmp, err := os.MkdirTemp("", "sluice-loadtest-")
			if err != nil {
				return err
			}
			dir = tmp
			if o.keepData {
				fmt.Fprintf(g.stderr, "data kept in %s\n", dir)
			} else {
				defer os.RemoveAll(dir)
			}
		}
		st, err := startStack(ctx, logger, stackOptions{dataDir: dir, kafkaAddr: "127.0.0.1:0", httpAddr: o.httpAddr,
			partitions: o.partitions, flushEvery: o.flushEvery, aggInterval: o.aggEvery, group: "sluice-loadtest"})
		if err != nil {
			return err
		}
		defer st.Close()
		setMemoryLimit(3*st.cfg.Ingest.MemoryBudget+256<<20, logger)
		stackCtx, stopStack := context.WithCancel(context.WithoutCancel(ctx))
		stackDone := make(chan error, 1)
		go func() { stackDone <- st.Run(stackCtx) }()
		defer func() {
			stopStack()
			if err := <-stackDone; err != nil {
				logger.Error("embedded stack", "err", err)
			}
		}()
		raw, err := openBucket(ctx, st.cfg.Store, logger, nil)
		if err != nil {
			return err
		}
		sums, err := openNamedBucket(ctx, "summary", *st.cfg.SummaryStore, logger, nil)
		if err != nil {
			return err
		}
		cfg.Brokers = []string{st.broker.Addr()}
		env.Mode = "embedded dev stack in this process"
		env.Table, env.Raw, env.Summaries = st.events, raw, sums
		env.IdleTimeout = st.cfg.Aggregate.IdleTimeout
		env.ConsumerLag = harness.GatherLag(st.reg)
		env.Aggregator = harness.GatherAggregator(st.reg, st.events.Name)
		env.ProcPID, env.ProcLabel = os.Getpid(), "the whole process: broker, ingester, aggregator, producers, verifier"
		fmt.Fprintf(g.stderr, "embedded stack: broker %s, data in %s, metrics http://%s/metrics\n", st.broker.Addr(), dir, st.srv.Addr())
	} else {
		fc, err := loadConfig(o.configPath)
		if err != nil {
			return err
		}
		cfg.Brokers = fc.Kafka.Brokers
		if brokersSet || len(cfg.Brokers) == 0 {
			cfg.Brokers = splitList(o.brokers)
		}
		var table *schema.Table
		for _, t := range fc.tables {
			if t.Topic == cfg.Topic {
				table = t
			}
		}
		if table == nil {
			return usageErrorf("no table in %s reads topic %q", o.configPath, cfg.Topic)
		}
		raw, err := openBucket(ctx, fc.Store, logger, nil)
		if err != nil {
			return err
		}
		env.Raw = raw
		if fc.SummaryStore != nil {
			if env.Summaries, err = openNamedBucket(ctx, "summary", *fc.SummaryStore, logger, nil); err != nil {
				return err
			}
		}
		env.Mode = "external pipeline (" + o.configPath + ")"
		env.Table = table
		env.IdleTimeout = fc.Aggregate.IdleTimeout
		if urls := splitList(o.metricsURL); len(urls) > 0 {
			env.ConsumerLag = sumLag(urls)
		}
		if o.ingestPID > 0 {
			env.ProcPID, env.ProcLabel = o.ingestPID, "the ingester process"
		}
	}
	if !cfg.NoSummaries && env.Table.Rollup != nil && cfg.LateBy >= env.Table.Rollup.LateHorizon {
		return usageErrorf("--late-by %s reaches past the rollup's late_horizon %s: those events would be counted as too late, not summarised", cfg.LateBy, env.Table.Rollup.LateHorizon)
	}
	rep, err := harness.Run(ctx, cfg, env)
	if err != nil {
		return err
	}
	rep.Text(g.stdout)
	if o.reportJSON != "" {
		if err := writeReport(o.reportJSON, rep.JSON); err != nil {
			return err
		}
	}
	if o.reportHTML != "" {
		if err := writeReport(o.reportHTML, rep.HTML); err != nil {
			return err
		}
	}
	if !rep.OK() {
		return errors.New("load test FAILED: the verifier found differences (listed above)")
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
