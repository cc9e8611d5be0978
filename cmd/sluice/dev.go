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
  - the dashboard and query API on http://127.0.0.1:8080/ (its URL, with a
    read-only token, is printed), metrics and health (/metrics, /healthz, /readyz).
Any Kafka client can produce to the broker too. Ctrl-C stops the demo
producer first, then waits until the ingester has committed everything the
broker holds, then stops the rest.`,
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
	// Short intervals so that a new user sees summaries soon: a minute window
	// is summarised once the watermark (committed event time minus the
	// table's allowed lateness) passes its end, and the aggregator looks
	// every 10 s.
	rulesFile, stopReceiver, err := startDevActions(o.dataDir, g.stdout, logger)
	if err != nil {
		return err
	}
	defer stopReceiver()
	st, err := startStack(ctx, logger, stackOptions{
		dataDir: o.dataDir, kafkaAddr: o.kafkaAddr, httpAddr: o.httpAddr, partitions: o.partitions,
		flushEvery: o.flushEvery, aggInterval: 10 * time.Second, group: "sluice-dev", rulesFile: rulesFile,
	})
	if err != nil {
		return err
	}
	defer st.Close()
	events := st.events
	lateness := 30 * time.Second
	if events.Rollup != nil {
		lateness = events.Rollup.AllowedLateness
	}

	fmt.Fprintf(g.stdout, `
Sluice dev is running.
  Dashboard      %s
  Kafka broker   %s   (topic %q, %d partitions; produce your own with any Kafka client)
  Objects        %s
  Metrics        http://%s/metrics   health: /healthz, /readyz
  Summaries      %s
  Actions        rules in %s; webhooks print here ("webhook fir_...")

Committed Parquet objects appear under %s/%s/ within about %s,
and 1-minute summaries under %s/%s/1m/ within two minutes: the first is
the minute dev started in, once that minute has ended and %s of allowed lateness have passed.
Next, in another terminal:
  go run ./cmd/sluice inspect %s/%s
  go run ./cmd/sluice inspect %s/%s/1m
Stop with Ctrl-C: the demo producer stops first, then the ingester commits
everything the broker holds.

`, st.webURL, st.broker.Addr(), events.Topic, o.partitions, st.lakeDir, st.srv.Addr(), st.summaryDir, rulesFile, st.lakeDir, events.Name, o.flushEvery,
		st.summaryDir, events.Name, lateness, st.lakeDir, events.Name, st.summaryDir, events.Name)

	// Shutdown reads top to bottom: Ctrl-C stops the demo producer (after
	// its last acknowledgement); the ingester then commits up to the
	// broker's end offsets, so nothing acknowledged is left for the next
	// start; then the ingester, the aggregator, HTTP and the broker stop.
	stackCtx, stopStack := context.WithCancel(context.WithoutCancel(ctx))
	defer stopStack()
	prodCtx, stopProducer := context.WithCancel(ctx)
	defer stopProducer()
	stackDone := make(chan error, 1)
	stackExited := make(chan struct{})
	go func() {
		stackDone <- st.Run(stackCtx)
		close(stackExited)
		stopProducer() // the stack failed: nothing would consume
	}()
	var prodErr error
	if o.noProducer {
		<-prodCtx.Done()
	} else {
		prodErr = runDemoProducer(prodCtx, st.broker.Addr(), events.Topic, o.rate, demoLateBy)
	}
	drainErr := errors.New("the pipeline stopped first")
	select {
	case <-stackExited:
	default:
		logger.Info("stopping: producer stopped; the ingester commits up to the broker's end offsets")
		drainCtx, cancel := context.WithTimeout(context.Background(), o.flushEvery+devDrainGrace)
		go func() {
			select {
			case <-stackExited:
				cancel()
			case <-drainCtx.Done():
			}
		}()
		drainErr = st.awaitCommitted(drainCtx)
		cancel()
	}
	stopStack()
	runErr := <-stackDone
	if drainErr != nil {
		logger.Warn("sluice dev stopped before everything in the broker was committed; the next start commits the rest", "err", drainErr)
	} else if runErr == nil {
		logger.Info("sluice dev stopped; everything the broker holds is committed", "objects", st.lakeDir)
	}
	return errors.Join(runErr, prodErr)
}

// devDrainGrace is how long, beyond one flush interval, dev waits at Ctrl-C
// for the ingester to commit up to the broker's end offsets.
const devDrainGrace = 15 * time.Second

// demoLateBy bounds how late the demo producer's late events are.
const demoLateBy = 2 * time.Minute

// runDemoProducer produces the sample table's events at rate until ctx is
// done and their acknowledgements are in. 1% of the events are late by up
// to lateBy, but only from lateBy after the start on: no event predates the
// start, so the first summaries are of minutes dev ran in, not of earlier
// minutes holding nothing but a few late events.
func runDemoProducer(ctx context.Context, broker, topic string, rate float64, lateBy time.Duration) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(broker), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		return fmt.Errorf("demo producer: %w", err)
	}
	defer cl.Close()
	onTime, cancel := context.WithTimeout(ctx, lateBy)
	err = produceDemo(onTime, cl, topic, rate, gen.Config{Seed: rand.Int64(), Clock: time.Now, NullShare: 0.02})
	cancel()
	if err != nil || ctx.Err() != nil {
		return err
	}
	return produceDemo(ctx, cl, topic, rate, gen.Config{Seed: rand.Int64(), Clock: time.Now, LateShare: 0.01, LateBy: lateBy, NullShare: 0.02})
}

// produceDemo produces g's events until ctx is done.
func produceDemo(ctx context.Context, cl *kgo.Client, topic string, rate float64, cfg gen.Config) error {
	g, err := gen.New(cfg)
	if err != nil {
		return err
	}
	p, err := gen.NewProducer(cl, g, gen.ProducerConfig{Topic: topic, Rate: rate})
	if err != nil {
		return err
	}
	_, err = p.Run(ctx)
	if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("demo producer: %w", err)
	}
	return nil
}
