package main

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/internal/app"
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
	var o app.BenchAggregateOptions
	cfg, s3 := &o.Lake, &o.S3
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
		RunE: func(cmd *cobra.Command, _ []string) error {
			return app.BenchAggregate(cmd.Context(), g.console(), o)
		},
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
	cfg, kc := &o.Ingest, &o.Kinesis
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
		RunE: func(cmd *cobra.Command, _ []string) error {
			return app.BenchIngest(cmd.Context(), g.console(), o)
		},
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
	f.StringVar(&cfg.Ingest, "ingest-config", "flush_bytes: 33554432\nflush_interval: 1s\nmemory_budget: 134217728", "the ingester's `ingest:` section (YAML)")
	f.StringVar(&o.WorkDir, "work-dir", "", "keep the broker log, objects and logs here (default: a temporary directory, removed)")
	f.BoolVar(&o.Keep, "keep", false, "keep the temporary work directory")
	return cmd
}
