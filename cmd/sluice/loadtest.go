package main

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/internal/app"
	"github.com/sluicehq/sluice/loadtest/harness"
)

func newLoadtestCmd(g *globals) *cobra.Command {
	var o app.LoadtestOptions
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
			o.BrokersSet = cmd.Flags().Changed("brokers")
			return app.Loadtest(cmd.Context(), g.console(), o)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.Embedded, "embedded", false, "start the embedded dev stack (broker, ingester, aggregator) in this process and test it")
	f.StringVarP(&o.ConfigPath, "config", "c", "", "test the pipeline this sluice.yaml describes (Kafka, store, summary_store)")
	f.StringVar(&o.Brokers, "brokers", "127.0.0.1:9092", "Kafka seed brokers, comma separated (with --config: default kafka.brokers)")
	f.StringVar(&o.Harness.Topic, "topic", harness.DefaultTopic, "topic of the sample table")
	f.Float64Var(&o.Harness.Rate, "rate", 20000, "target events per second (0: as fast as the broker takes them)")
	f.DurationVar(&o.Harness.Duration, "duration", 0, "how long to produce (default 1m unless --events)")
	f.Int64Var(&o.Harness.Events, "events", 0, "how many records to produce (whichever of --duration and --events comes first)")
	f.IntVar(&o.Harness.Producers, "producers", 0, "parallel producers, each with its own client (0: one per 100k events/s)")
	f.IntVar(&o.Harness.Users, "users", harness.DefaultUsers, "distinct user_id values (the key cardinality)")
	f.Float64Var(&o.Harness.ZipfS, "zipf", harness.DefaultZipfS, "Zipf skew of user popularity (> 1)")
	f.Float64Var(&o.Harness.LateShare, "late-share", 0.01, "share of events with an event time in the past")
	f.DurationVar(&o.Harness.LateBy, "late-by", 3*time.Minute, "how far in the past late events are, at most (beyond the allowed lateness, so that late data recomputes closed windows)")
	f.Float64Var(&o.Harness.NullShare, "null-share", 0.02, "share of events with a null country (and, independently, device)")
	f.Float64Var(&o.Harness.BadShare, "bad-share", 0.001, "share of malformed records, every dead-letter kind in turn")
	f.IntVar(&o.Harness.EventBytes, "event-size", 0, "pad events to about this many bytes (0: natural, about 230)")
	f.Int64Var(&o.Harness.Seed, "seed", 1, "generator seed")
	f.TimeVar(&o.Harness.Start, "start", time.Time{}, []string{time.RFC3339Nano}, "pin the first event time (RFC 3339, in the past), e.g. 2026-01-01T22:59:45Z to cross an hour and close the day's windows; default: the wall clock")
	f.DurationVar(&o.Harness.DrainTimeout, "drain-timeout", harness.DefaultDrainTimeout, "how long to wait for everything to be committed")
	f.DurationVar(&o.Harness.CatchUpTimeout, "catchup-timeout", harness.DefaultCatchUpTimeout, "how long to wait for the aggregator to summarise every closed window")
	f.BoolVar(&o.Harness.NoSummaries, "no-summaries", false, "verify raw data only")
	f.StringVar(&o.ReportJSON, "report-json", "", "write the report as JSON to this file")
	f.StringVar(&o.ReportHTML, "report-html", "", "write the report as an HTML page with charts to this file")
	f.BoolVar(&o.Quiet, "quiet", false, "no status line while running")
	f.StringVar(&o.DataDir, "data-dir", "", "embedded: where the broker log and the stores live (default: a temporary directory, removed afterwards)")
	f.BoolVar(&o.KeepData, "keep-data", false, "embedded: keep the temporary data directory")
	f.StringVar(&o.HTTPAddr, "http-addr", "127.0.0.1:0", "embedded: address of /metrics")
	f.Int32Var(&o.Partitions, "partitions", 4, "embedded: partitions of the topic")
	f.DurationVar(&o.FlushEvery, "flush-interval", 5*time.Second, "embedded: flush each partition at least this often")
	f.DurationVar(&o.AggEvery, "aggregate-interval", 10*time.Second, "embedded: how often the aggregator runs")
	f.StringVar(&o.MetricsURL, "metrics-url", "", "with --config: the ingesters' /metrics, comma separated, for their consumer lag (summed)")
	f.IntVar(&o.IngestPID, "ingester-pid", 0, "with --config: the ingester's process id, for its CPU and memory (Linux /proc)")
	return cmd
}
