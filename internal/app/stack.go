package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/aggregate"
	"github.com/sluicehq/sluice/ingest"
	"github.com/sluicehq/sluice/ingest/inbox"
	"github.com/sluicehq/sluice/ingest/kafka"
	"github.com/sluicehq/sluice/internal/config"
	"github.com/sluicehq/sluice/internal/httpserver"
	"github.com/sluicehq/sluice/internal/kafkabroker"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/objstore/client"
	"github.com/sluicehq/sluice/ops"
	"github.com/sluicehq/sluice/schema"
)

// StackOptions shape the embedded stack: what `sluice dev` runs, and what
// `sluice loadtest --embedded` tests.
type StackOptions struct {
	DataDir    string
	KafkaAddr  string // "127.0.0.1:0" picks a free port
	HTTPAddr   string
	Partitions int32
	FlushEvery time.Duration
	// FlushIdle is the ingester's flush_idle: a partition whose records
	// stopped is flushed this long after the last one; 0: off.
	FlushIdle   time.Duration
	AggInterval time.Duration
	Group       string
	RulesFile   string // ops rules; empty: no ops service
	// MemoryBudget is the ingester's memory_budget; 0: the default.
	MemoryBudget int64
}

// Stack is the embedded pipeline on one machine: a broker, the ingester,
// the aggregator and /metrics, in this process.
type Stack struct {
	LakeDir    string        // the raw store, a local directory
	SummaryDir string        // the summary store, a local directory
	Events     *schema.Table // the sample table the broker has a topic for
	Config     *config.File  // the stack's configuration, as a sluice.yaml would hold it
	Registry   *prometheus.Registry
	metrics    *procMetrics // the series the stack's components share, on Registry

	opts   StackOptions
	logger *slog.Logger
	broker *kafkabroker.Broker
	writer *ingest.Writer
	src    source
	batch  *inbox.Source // files dropped into <data-dir>/inbox/events/ (stack_inbox.go)
	agg    *aggregate.Service
	ops    *ops.Service // nil without rules
	srv    *httpserver.Server
	webURL string // the dashboard, with a read token

	ingestStopped chan struct{} // closed when the ingester has stopped
}

// StartStack starts the broker and prepares the ingester, the aggregator
// and the HTTP server; Run runs them.
func StartStack(ctx context.Context, logger *slog.Logger, o StackOptions) (st *Stack, err error) {
	s := &Stack{opts: o, logger: logger, ingestStopped: make(chan struct{}),
		LakeDir: filepath.Join(o.DataDir, "lake"), SummaryDir: filepath.Join(o.DataDir, "summaries")}
	for _, dir := range []string{s.LakeDir, s.SummaryDir} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("create data dir: %w", err)
		}
	}
	tables := schema.SampleTables()
	s.Events = tables[0]
	for _, t := range tables {
		if t.Name == "events" {
			s.Events = t
		}
	}
	s.broker, err = kafkabroker.Start(kafkabroker.Config{
		Addr:    o.KafkaAddr,
		DataDir: filepath.Join(o.DataDir, "kafka"),
		Topics:  map[string]int32{s.Events.Topic: o.Partitions},
	}, logger)
	if err != nil {
		return nil, fmt.Errorf("start embedded broker: %w", err)
	}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	s.Config = stackConfig(o, s.broker.Addr(), s.LakeDir, s.SummaryDir, tables)
	if err := s.Config.Ingest.Validate(); err != nil {
		return nil, UsageError{err}
	}
	if err := s.Config.Aggregate.Validate(); err != nil {
		return nil, UsageError{err}
	}
	if err := s.build(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// build prepares the stack's components over its config and registry.
func (s *Stack) build(ctx context.Context) (err error) {
	logger, o, tables := s.logger, s.opts, s.Config.Tables
	if s.Registry, err = newRegistry(); err != nil {
		return err
	}
	s.metrics = newProcMetrics(s.Registry)
	if _, s.writer, s.src, err = newIngester(ctx, s.Config, logger, s.metrics); err != nil {
		return err
	}
	if err := s.newInbox(); err != nil {
		return err
	}
	if s.agg, err = newAggregateService(ctx, s.Config, logger, s.metrics); err != nil {
		return err
	}
	if o.RulesFile != "" {
		if s.Config.Rules, err = ops.LoadRules(o.RulesFile, tables, s.Config.Kafka.Brokers); err != nil {
			return err
		}
		s.Config.Ops = ops.Config{Interval: 5 * time.Second}.WithDefaults()
		if s.ops, err = newOpsService(ctx, s.Config, logger, s.metrics); err != nil {
			return err
		}
	}
	s.srv = httpserver.New(s.Config.HTTP.Addr, s.Registry, logger)
	if err := s.srv.Listen(); err != nil {
		return fmt.Errorf("http: %w (another sluice dev running? use --http-addr)", err)
	}
	if s.webURL, err = mountDevWeb(ctx, s, logger); err != nil {
		return fmt.Errorf("web: %w", err)
	}
	return nil
}

// stackConfig is the configuration of the stack: as a sluice.yaml with
// local stores under the data directory would hold it, with short
// intervals.
func stackConfig(o StackOptions, broker, lakeDir, summaryDir string, tables []*schema.Table) *config.File {
	return &config.File{
		Kafka:        kafka.Config{Brokers: []string{broker}, Group: o.Group}.WithDefaults(),
		Store:        client.Config{LocalDir: lakeDir},
		Ingest:       ingest.WriterConfig{FlushInterval: o.FlushEvery, FlushIdle: o.FlushIdle, FlushRecords: 250_000, FlushBytes: 32 << 20, MemoryBudget: o.MemoryBudget}.WithDefaults(),
		HTTP:         config.HTTP{Addr: o.HTTPAddr},
		SummaryStore: &client.Config{LocalDir: summaryDir},
		Aggregate:    aggregate.Config{Interval: o.AggInterval, Lease: time.Minute, IdleTimeout: time.Minute}.WithDefaults(),
		Tables:       tables,
	}
}

// Run runs the stack until ctx is done, then stops it as the group of a
// command that embeds it would (see addTo).
func (s *Stack) Run(ctx context.Context) error {
	g := newGroup(ctx)
	s.addTo(ctx, g, nil)
	return g.run()
}

// addTo adds the stack's actors to a command's group, in the order they
// stop: the ingester flushes and commits what it holds, then the inbox
// source, the aggregator, the ops service and HTTP stop, and the writer
// closes. report, if not nil, is given each actor's error and returns the
// one to record.
func (s *Stack) addTo(ctx context.Context, g *group, report func(error) error) {
	add := func(run func(context.Context) error) {
		g.add(ctx, func(ctx context.Context) error {
			err := run(ctx)
			if report != nil {
				return report(err)
			}
			return err
		})
	}
	add(func(ctx context.Context) error {
		defer close(s.ingestStopped)
		return s.src.Run(ctx)
	})
	add(func(ctx context.Context) error {
		defer s.batch.Close()
		return s.batch.Run(ctx)
	})
	add(s.agg.Run)
	if s.ops != nil {
		add(func(ctx context.Context) error {
			defer s.ops.Close()
			return s.ops.Run(ctx)
		})
	}
	add(s.srv.Run)
	g.addStep(s.writer.Close)
}

// BrokerAddr is the address of the embedded Kafka-protocol broker.
func (s *Stack) BrokerAddr() string { return s.broker.Addr() }

// HTTPAddr is the address /metrics and the web tier listen on.
func (s *Stack) HTTPAddr() string { return s.srv.Addr() }

// Close releases the broker and the writer; call it after Run returned.
func (s *Stack) Close() {
	if s.writer != nil {
		s.writer.Close()
	}
	if s.broker != nil {
		s.broker.Close()
	}
}

// awaitCommitted waits until every partition's commit chain of the events
// topic reaches the broker's end offset (as it is when called), or ctx is
// done. Call it once nothing produces any more.
func (s *Stack) awaitCommitted(ctx context.Context) error {
	ends, err := s.brokerEnds(ctx)
	if err != nil {
		return err
	}
	bucket, err := objstore.NewLocal(s.LakeDir)
	if err != nil {
		return err
	}
	log := lake.NewCommitLog(bucket)
	source := "kafka:" + s.Events.Topic
	for {
		chains, err := log.Chains(ctx, s.Events.Name)
		if err != nil && ctx.Err() == nil {
			return fmt.Errorf("read commit chains: %w", err)
		}
		behind := map[string]int64{}
		for p, end := range ends {
			behind[p] = end
		}
		for _, ch := range chains {
			if ch.Source != source {
				continue
			}
			if end, ok := ch.End(); ok {
				if at, ok := end.Next.Int64(); ok && at >= ends[ch.Partition] {
					delete(behind, ch.Partition)
				}
			}
		}
		for p, end := range behind {
			if end == 0 {
				delete(behind, p) // nothing to commit
			}
		}
		if len(behind) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("partitions not committed up to the broker's end offsets %v: %w", behind, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// brokerEnds returns the end offset of every partition of the events topic,
// by partition number as the commit log names it.
func (s *Stack) brokerEnds(ctx context.Context) (map[string]int64, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.broker.Addr()))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	listed, err := kadm.NewClient(cl).ListEndOffsets(ctx, s.Events.Topic)
	if err != nil {
		return nil, fmt.Errorf("list end offsets: %w", err)
	}
	ends := map[string]int64{}
	var errs []error
	listed.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			errs = append(errs, fmt.Errorf("end offset of %s/%d: %w", o.Topic, o.Partition, o.Err))
			return
		}
		ends[strconv.Itoa(int(o.Partition))] = o.Offset
	})
	return ends, errors.Join(errs...)
}
