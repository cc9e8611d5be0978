package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/ingest"
	"github.com/sluicehq/sluice/loadtest/gen"
)

// DevOptions are the flags of `sluice dev`.
type DevOptions struct {
	DataDir    string
	KafkaAddr  string
	HTTPAddr   string
	Partitions int32
	Rate       float64
	NoProducer bool
	FlushEvery time.Duration
	FlushIdle  time.Duration
}

// devDrainGrace is how long, beyond one flush interval, dev waits at Ctrl-C
// for the ingester to commit up to the broker's end offsets.
const devDrainGrace = 15 * time.Second

// demoLateBy bounds how late the demo producer's late events are.
const demoLateBy = 2 * time.Minute

// Dev runs the whole pipeline in this process until ctx is done: the
// embedded stack, the demo producer and the webhook receiver of the sample
// rules.
func Dev(ctx context.Context, c Console, o DevOptions) error {
	if o.Partitions < 1 {
		return Usagef("--partitions must be at least 1")
	}
	if o.Rate < 0 {
		return Usagef("--rate must not be negative")
	}
	logger := c.Logger
	// The ingester's share plus room for the broker and the aggregator.
	setMemoryLimit(3*ingest.DefaultMemoryBudget+256<<20, logger)
	rulesFile, receiver, err := prepareDevActions(o.DataDir, c.Stdout, logger)
	if err != nil {
		return err
	}
	// Short intervals so that a new user sees summaries soon: a minute window
	// is summarised once the watermark (committed event time minus the
	// table's allowed lateness) passes its end, and the aggregator looks
	// every 10 s.
	st, err := StartStack(ctx, logger, StackOptions{
		DataDir: o.DataDir, KafkaAddr: o.KafkaAddr, HTTPAddr: o.HTTPAddr, Partitions: o.Partitions,
		FlushEvery: o.FlushEvery, FlushIdle: o.FlushIdle, AggInterval: 10 * time.Second, Group: "sluice-dev", RulesFile: rulesFile,
	})
	if err != nil {
		if receiver != nil {
			receiver.Close()
		}
		return err
	}
	defer st.Close()
	printDevWelcome(c.Stdout, st, o, rulesFile)

	// Shutdown reads top to bottom: Ctrl-C stops the demo producer (after
	// its last acknowledgement); the ingester then commits up to the
	// broker's end offsets, so nothing acknowledged is left for the next
	// start; then the ingester, the aggregator, HTTP and the webhook
	// receiver stop, and the broker last.
	g := newGroup(ctx)
	g.add(ctx, func(ctx context.Context) error {
		if o.NoProducer {
			<-ctx.Done()
			return nil
		}
		return RunDemoProducer(ctx, st.broker.Addr(), st.Events.Topic, o.Rate, demoLateBy)
	})
	var drainErr error
	g.addStep(func() { drainErr = st.drain(o.FlushEvery + devDrainGrace) })
	st.addTo(ctx, g, nil)
	if receiver != nil {
		g.add(ctx, receiver.Run)
	}
	runErr := g.run()
	if drainErr != nil {
		logger.Warn("sluice dev stopped before everything in the broker was committed; the next start commits the rest", "err", drainErr)
	} else if runErr == nil {
		logger.Info("sluice dev stopped; everything the broker holds is committed", "objects", st.LakeDir)
	}
	return runErr
}

// drain waits, up to timeout, until the ingester has committed everything
// the broker holds; at once if the ingester has stopped.
func (s *Stack) drain(timeout time.Duration) error {
	select {
	case <-s.ingestStopped:
		return errors.New("the pipeline stopped first")
	default:
	}
	s.logger.Info("stopping: producer stopped; the ingester commits up to the broker's end offsets")
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	go func() {
		select {
		case <-s.ingestStopped:
			cancel()
		case <-ctx.Done():
		}
	}()
	return s.awaitCommitted(ctx)
}

func printDevWelcome(out io.Writer, st *Stack, o DevOptions, rulesFile string) {
	events := st.Events
	lateness := 30 * time.Second
	if events.Rollup != nil {
		lateness = events.Rollup.AllowedLateness
	}
	fmt.Fprintf(out, `
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

`, st.webURL, st.broker.Addr(), events.Topic, o.Partitions, st.LakeDir, st.srv.Addr(), st.SummaryDir, rulesFile, st.LakeDir, events.Name, o.FlushEvery,
		st.SummaryDir, events.Name, lateness, st.LakeDir, events.Name, st.SummaryDir, events.Name)
}

// RunDemoProducer produces the sample table's events at rate until ctx is
// done and their acknowledgements are in. 1% of the events are late by up
// to lateBy, but only from lateBy after the start on: no event predates the
// start, so the first summaries are of minutes dev ran in, not of earlier
// minutes holding nothing but a few late events.
func RunDemoProducer(ctx context.Context, broker, topic string, rate float64, lateBy time.Duration) error {
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
