package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/internal/app"
	"github.com/sluicehq/sluice/internal/kafkabroker"
	"github.com/sluicehq/sluice/loadtest/harness"
)

// Development, testing and measurement.

func newDevCmd(g *globals) *cobra.Command {
	var o app.DevOptions
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run the whole pipeline on one machine with embedded defaults: broker, demo producer, ingester, aggregator",
		Long: `Starts, in one process and with nothing to set up:
  - a Kafka-protocol broker on 127.0.0.1:9092 (data kept under <data-dir>/kafka),
  - a demo producer writing a realistic event stream to the sample table "events",
  - the ingester, writing committed Parquet objects under <data-dir>/lake,
  - the aggregator, rolling them up into windowed summaries under <data-dir>/summaries,
  - the dashboard and query API on http://127.0.0.1:8080/ (its URL, with a
    read-only token, is printed), metrics and health (/metrics, /healthz, /readyz).
Any Kafka client can produce to the broker too. Ctrl-C stops the demo
producer first, then waits until the ingester has committed everything the
broker holds, then stops the rest.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return app.Dev(cmd.Context(), g.con, o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.DataDir, "data-dir", "./sluice-data", "where the broker's log and the object store live")
	f.StringVar(&o.KafkaAddr, "kafka-addr", kafkabroker.DefaultAddr, "address of the embedded Kafka-protocol broker (loopback)")
	f.StringVar(&o.HTTPAddr, "http-addr", "127.0.0.1:8080", "address of /metrics, /healthz and /readyz")
	f.Int32Var(&o.Partitions, "partitions", 4, "partitions of the events topic when it is created")
	f.Float64Var(&o.Rate, "rate", 2000, "demo events per second (0: as fast as possible)")
	f.BoolVar(&o.NoProducer, "no-producer", false, "do not run the demo producer (produce your own records to topic events)")
	f.DurationVar(&o.FlushEvery, "flush-interval", 5*time.Second, "flush each partition at least this often")
	f.DurationVar(&o.FlushIdle, "flush-idle", time.Second, "flush a partition this long after its records stop arriving (0: off)")
	return cmd
}

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
			return app.Loadtest(cmd.Context(), g.con, o)
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
	f.DurationVar(&o.FlushIdle, "flush-idle", time.Second, "embedded: flush a partition this long after its records stop arriving (0: off)")
	f.DurationVar(&o.AggEvery, "aggregate-interval", 10*time.Second, "embedded: how often the aggregator runs")
	f.StringVar(&o.MetricsURL, "metrics-url", "", "with --config: the ingesters' /metrics, comma separated, for their consumer lag (summed)")
	f.IntVar(&o.IngestPID, "ingester-pid", 0, "with --config: the ingester's process id, for its CPU and memory (Linux /proc)")
	return cmd
}

func newBenchCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Benchmarks of the real binaries, end to end",
	}
	cmd.AddCommand(newBenchIngestCmd(g), newBenchAggregateCmd(g))
	return cmd
}

func newBenchAggregateCmd(g *globals) *cobra.Command {
	var o app.BenchAggregateOptions
	cfg, s3 := &o.Lake, &o.S3 // the flags below fill the options through these
	cmd := &cobra.Command{
		Use:   "aggregate",
		Short: "Time the real `sluice aggregate --once` pass over committed raw objects: rows/s, CPU-s per million rows, peak RSS",
		Long: `Writes --events generated events of the sample table through the real ingest
writer into a store (a local directory under --work-dir, or an S3 bucket with
--s3-bucket), committed as an ingester commits them; the table keeps --window
as its only window. Then it runs this binary's "aggregate --once" over them
--rounds times, as a separate process each time (summaries cleared before
each), and reports what the kernel measured of that process alone: wall
time, rows/s, user+system CPU-seconds per million rows and peak RSS.

--events-per-second sets how much event time the events span: the default
50 spreads 2,000,000 events over 11 hours, about 52,000 (window, event_type,
country) groups of 1-minute windows; 1000 packs them into half an hour.

--prepare-only writes the lake and its sluice.yaml into --work-dir and stops,
for other tools to read the same files (make bench-aggregate-duckdb).
--fold-only times only the in-memory fold of the objects, in this process: a
micro-benchmark of the engine, not of the path a user runs.`,
		Example: `  sluice bench aggregate --events 2000000 --window 1m --rounds 3
  sluice bench aggregate --s3-endpoint 127.0.0.1:9000 --s3-bucket bench --s3-path-style --s3-insecure
  sluice bench aggregate --fold-only --events-per-second 1000`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return app.BenchAggregate(cmd.Context(), g.con, o) },
	}
	f := cmd.Flags()
	f.Int64Var(&cfg.Events, "events", 2_000_000, "events to aggregate")
	f.IntVar(&cfg.Partitions, "partitions", 8, "partitions the events are spread over")
	f.Int64Var(&cfg.Seed, "seed", 1, "generator seed")
	f.DurationVar(&cfg.Window, "window", time.Minute, "window size (the table's only window)")
	f.Float64Var(&cfg.EventsPerSecond, "events-per-second", 50, "events per second of event time: lower spreads them over more windows")
	f.IntVar(&cfg.Workers, "workers", 0, "--fold-only: aggregation goroutines (0: GOMAXPROCS)")
	f.IntVar(&cfg.FlushRecords, "flush-records", 250_000, "records per raw object flush, as an ingester would")
	f.IntVar(&o.Rounds, "rounds", 1, "passes to time")
	f.StringVar(&cfg.Dir, "work-dir", "", "keep the lake, summaries and config here (default: a temporary directory, removed)")
	f.BoolVar(&o.Keep, "keep", false, "keep the temporary work directory")
	f.BoolVar(&o.Prepare, "prepare-only", false, "write the lake and sluice.yaml into --work-dir, and stop")
	f.BoolVar(&o.FoldOnly, "fold-only", false, "time only the in-memory fold (a micro-benchmark)")
	f.StringVar(&s3.Endpoint, "s3-endpoint", "", "S3 endpoint host[:port] (with --s3-bucket)")
	f.StringVar(&s3.Bucket, "s3-bucket", "", "keep the lake in this S3 bucket instead of --work-dir (created if missing)")
	f.StringVar(&s3.Prefix, "s3-prefix", "", "key prefix in the bucket (default: a new one per run)")
	f.StringVar(&s3.Region, "s3-region", "", "S3 region")
	f.StringVar(&s3.AccessKey, "s3-access-key", "", "S3 access key (default: AWS environment, shared file, instance role)")
	f.StringVar(&s3.SecretKey, "s3-secret-key", "", "S3 secret key")
	f.BoolVar(&s3.Insecure, "s3-insecure", false, "talk plain HTTP to the S3 endpoint")
	f.BoolVar(&s3.PathStyle, "s3-path-style", false, "path-style bucket addressing (MinIO, versitygw)")
	return cmd
}

func newBenchIngestCmd(g *globals) *cobra.Command {
	var o app.BenchIngestOptions
	cfg, kc := &o.Ingest, &o.Kinesis // the flags below fill the options through these
	cmd := &cobra.Command{
		Use:   "ingest",
		Short: "Drain N events from a broker process into committed Parquet objects and report events/s, CPU and peak RSS",
		Long: `Starts a broker process (sluice broker), produces --events events of the sample
table (about 210 bytes each, Zipf-skewed user keys), then starts an ingester
process (sluice ingest) and waits until the commit log holds every event.
Reports the drain rate, input MB/s, the ingester's CPU-seconds per million
events and its peak RSS (as the kernel measured them).

With --source kinesis it creates a stream of --partitions shards on the
Kinesis-compatible server at --kinesis-endpoint (kinesalite: make
bench-ingest-kinesis), puts the same generated events (the user id is the
partition key), and drains the stream instead. The server's CPU during the
drain is reported when --kinesis-pid names its process.`,
		Example: `  sluice bench ingest --events 2000000 --partitions 8
  sluice bench ingest --source kinesis --kinesis-endpoint http://127.0.0.1:4567 --events 200000 --partitions 4`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return app.BenchIngest(cmd.Context(), g.con, o) },
	}
	f := cmd.Flags()
	f.Int64Var(&cfg.Events, "events", 2_000_000, "events to produce and drain")
	f.Int32Var(&cfg.Partitions, "partitions", 8, "partitions of the topic (shards of the stream)")
	f.StringVar(&o.Source, "source", "kafka", "kafka (a broker process of its own) or kinesis (a stream on --kinesis-endpoint)")
	f.StringVar(&kc.Endpoint, "kinesis-endpoint", "", "URL of a Kinesis-compatible server, e.g. http://127.0.0.1:4567 (with --source kinesis)")
	f.IntVar(&kc.ServerPid, "kinesis-pid", 0, "pid of the Kinesis-compatible server, to report its CPU during the drain")
	f.IntVar(&kc.Putters, "kinesis-putters", 4, "PutRecords calls in flight while producing")
	f.DurationVar(&cfg.IdleWindow, "idle", 5*time.Second, "after the drain, measure the ingester's CPU with nothing to read for this long (0: skip)")
	f.StringVar(&cfg.CPUProfile, "ingester-cpuprofile", "", "the ingester writes a CPU profile of its run to this file (for pprof)")
	f.IntVar(&cfg.Users, "users", 100_000, "distinct user keys")
	f.Float64Var(&cfg.ZipfS, "zipf", 1.2, "skew of user keys (Zipf s > 1)")
	f.Int64Var(&cfg.Seed, "seed", 1, "generator seed")
	// flush_idle ends the drain when the records stop: without it every
	// partition's last buffer waits out flush_interval, a configured latency
	// that was a third of the drain's time and no work at all.
	f.StringVar(&cfg.Ingest, "ingest-config", "flush_bytes: 33554432\nflush_interval: 1s\nflush_idle: 200ms\nmemory_budget: 134217728",
		"the ingester's `ingest:` section (YAML)")
	f.StringVar(&o.WorkDir, "work-dir", "", "keep the broker log, objects and logs here (default: a temporary directory, removed)")
	f.BoolVar(&o.Keep, "keep", false, "keep the temporary work directory")
	return cmd
}

func newBrokerCmd(g *globals) *cobra.Command {
	var (
		cfg          kafkabroker.Config
		topics       []string
		brokerConfig map[string]string
	)
	cmd := &cobra.Command{
		Use:   "broker",
		Short: "Run a single-node Kafka-protocol broker on loopback (for development and tests)",
		Long: `Run a single-node Kafka-protocol broker (franz-go kfake) on a loopback address.

With --data-dir, topics, records and group offsets survive restarts and kill -9
of this process: a record is written to its segment file before the produce is
acknowledged. Add --sync to fsync each batch too, so acknowledged records also
survive a machine crash or power loss.

The address the broker listens on is printed on stdout as the first line, so
that --addr 127.0.0.1:0 can be used by scripts and tests.`,
		Example: `  sluice broker --addr 127.0.0.1:9092 --data-dir ./sluice-data/kafka --topic events:8 --sync`,
		Args:    usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ts, err := parseTopicFlags(topics)
			if err != nil {
				return app.UsageError{Err: err}
			}
			cfg.Topics, cfg.BrokerConfigs = ts, brokerConfig
			return app.Broker(cmd.Context(), g.con, cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Addr, "addr", kafkabroker.DefaultAddr, "loopback host:port to listen on (port 0 picks a free one)")
	f.StringVar(&cfg.DataDir, "data-dir", "", "keep topics, records and offsets in this directory across restarts (empty: in memory)")
	f.BoolVar(&cfg.SyncWrites, "sync", false, "fsync every produced batch before acknowledging it (needs --data-dir)")
	f.StringArrayVar(&topics, "topic", nil, "topic to create at start, as name or name:partitions (repeatable)")
	f.Int32Var(&cfg.DefaultPartitions, "default-partitions", 10, "partitions of auto-created topics and of --topic without a count")
	f.BoolVar(&cfg.AutoCreateTopics, "auto-create-topics", true, "create unknown topics when clients ask for them")
	f.StringVar(&cfg.ClusterID, "cluster-id", "", "cluster ID reported to clients (default kfake; kept from --data-dir)")
	f.StringToStringVar(&brokerConfig, "broker-config", nil, "broker config key=value, e.g. message.max.bytes=4194304 (repeatable)")
	return cmd
}

// parseTopicFlags turns ["events:8", "dlq"] into {"events": 8, "dlq": 0}.
func parseTopicFlags(specs []string) (map[string]int32, error) {
	out := make(map[string]int32, len(specs))
	for _, s := range specs {
		name, parts, hasParts := strings.Cut(s, ":")
		var n int32
		if hasParts {
			v, err := strconv.ParseInt(parts, 10, 32)
			if err != nil || v < 1 {
				return nil, fmt.Errorf("--topic %q: partitions must be a positive integer", s)
			}
			n = int32(v)
		}
		if name == "" {
			return nil, fmt.Errorf("--topic %q: empty topic name", s)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("--topic %q: topic given twice", s)
		}
		out[name] = n
	}
	return out, nil
}
