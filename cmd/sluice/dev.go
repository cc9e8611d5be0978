package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/ingest"
	"github.com/sluicehq/sluice/internal/kafkabroker"
	"github.com/sluicehq/sluice/loadtest/gen"
)

type devOptions struct {
	dataDir    string
	kafkaAddr  string
	httpAddr   string
	partitions int32
	rate       float64
	noProducer bool
	flushEvery time.Duration
}

func newDevCmd(g *globals) *cobra.Command {
	var o devOptions
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run the whole pipeline on one machine with embedded defaults: broker, demo producer, ingester, aggregator",
		Long: `Starts, in one process and with nothing to set up:
  - a Kafka-protocol broker on 127.0.0.1:9092 (data kept under <data-dir>/kafka),
  - a demo producer writing a realistic event stream to the sample table "events",
  - the ingester, writing committed Parquet objects under <data-dir>/lake,
  - the aggregator, rolling them up into windowed summaries under <data-dir>/summaries,
  - metrics and health on http://127.0.0.1:8080 (/metrics, /healthz, /readyz).
Any Kafka client can produce to the broker too. Ctrl-C stops it with every
buffer flushed and committed.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.partitions < 1 {
				return usageErrorf("--partitions must be at least 1")
			}
			if o.rate < 0 {
				return usageErrorf("--rate must not be negative")
			}
			return runDev(cmd.Context(), g, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.dataDir, "data-dir", "./sluice-data", "where the broker's log and the object store live")
	f.StringVar(&o.kafkaAddr, "kafka-addr", kafkabroker.DefaultAddr, "address of the embedded Kafka-protocol broker (loopback)")
	f.StringVar(&o.httpAddr, "http-addr", "127.0.0.1:8080", "address of /metrics, /healthz and /readyz")
	f.Int32Var(&o.partitions, "partitions", 4, "partitions of the events topic when it is created")
	f.Float64Var(&o.rate, "rate", 2000, "demo events per second (0: as fast as possible)")
	f.BoolVar(&o.noProducer, "no-producer", false, "do not run the demo producer (produce your own records to topic events)")
	f.DurationVar(&o.flushEvery, "flush-interval", 5*time.Second, "flush each partition at least this often")
	return cmd
}

func runDev(ctx context.Context, g *globals, o devOptions) error {
	logger := g.Logger()
	// The ingester's share plus room for the broker and the aggregator.
	setMemoryLimit(3*ingest.DefaultMemoryBudget+256<<20, logger)
	// Short intervals so that a new user sees summaries within about two
	// minutes: the first minute window closes once the watermark (event time
	// minus 30s of allowed lateness) passes its end.
	st, err := startStack(ctx, logger, stackOptions{
		dataDir: o.dataDir, kafkaAddr: o.kafkaAddr, httpAddr: o.httpAddr, partitions: o.partitions,
		flushEvery: o.flushEvery, aggInterval: 10 * time.Second, group: "sluice-dev",
	})
	if err != nil {
		return err
	}
	defer st.Close()
	events := st.events

	fmt.Fprintf(g.stdout, `
Sluice dev is running.
  Kafka broker   %s   (topic %q, %d partitions; produce your own with any Kafka client)
  Objects        %s
  Metrics        http://%s/metrics   health: /healthz, /readyz
  Summaries      %s

Committed Parquet objects appear under %s/%s/ within about %s,
and 1-minute summaries under %s/%s/1m/ within about two minutes.
Next, in another terminal:
  go run ./cmd/sluice inspect %s/%s
  go run ./cmd/sluice inspect %s/%s/1m
Stop with Ctrl-C: every buffer is flushed and committed first.

`, st.broker.Addr(), events.Topic, o.partitions, st.lakeDir, st.srv.Addr(), st.summaryDir, st.lakeDir, events.Name, o.flushEvery,
		st.summaryDir, events.Name, st.lakeDir, events.Name, st.summaryDir, events.Name)

	// Shutdown reads top to bottom: the producer stops first, the ingester
	// flushes and commits what it holds, then the aggregator, HTTP and the
	// broker go.
	producerDone := make(chan error, 1)
	if o.noProducer {
		producerDone <- nil
	} else {
		go func() { producerDone <- runDemoProducer(ctx, st.broker.Addr(), events.Topic, o.rate) }()
	}
	runErr := st.Run(ctx)
	prodErr := <-producerDone
	logger.Info("sluice dev stopped; everything buffered was committed", "objects", st.lakeDir)
	return errors.Join(runErr, prodErr)
}

func runDemoProducer(ctx context.Context, broker, topic string, rate float64) error {
	g, err := gen.New(gen.Config{Seed: rand.Int64(), Clock: time.Now, LateShare: 0.01, LateBy: 2 * time.Minute, NullShare: 0.02})
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(broker), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		return fmt.Errorf("demo producer: %w", err)
	}
	defer cl.Close()
	p, err := gen.NewProducer(cl, g, gen.ProducerConfig{Topic: topic, Rate: rate})
	if err != nil {
		return err
	}
	_, err = p.Run(ctx)
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("demo producer: %w", err)
	}
	return nil
}
