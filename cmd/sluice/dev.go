package main

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/internal/app"
	"github.com/sluicehq/sluice/internal/kafkabroker"
)

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
		RunE: func(cmd *cobra.Command, _ []string) error {
			return app.Dev(cmd.Context(), g.console(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.DataDir, "data-dir", "./sluice-data", "where the broker's log and the object store live")
	f.StringVar(&o.KafkaAddr, "kafka-addr", kafkabroker.DefaultAddr, "address of the embedded Kafka-protocol broker (loopback)")
	f.StringVar(&o.HTTPAddr, "http-addr", "127.0.0.1:8080", "address of /metrics, /healthz and /readyz")
	f.Int32Var(&o.Partitions, "partitions", 4, "partitions of the events topic when it is created")
	f.Float64Var(&o.Rate, "rate", 2000, "demo events per second (0: as fast as possible)")
	f.BoolVar(&o.NoProducer, "no-producer", false, "do not run the demo producer (produce your own records to topic events)")
	f.DurationVar(&o.FlushEvery, "flush-interval", 5*time.Second, "flush each partition at least this often")
	return cmd
}
