package main

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
	"github.com/sluicehq/sluice/internal/httpserver"
	"github.com/sluicehq/sluice/internal/kafkabroker"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/ops"
	"github.com/sluicehq/sluice/schema"
)

// stackOptions shape the embedded stack: what `sluice dev` runs, and what
// `sluice loadtest --embedded` tests.
type stackOptions struct {
	dataDir     string
	kafkaAddr   string // "127.0.0.1:0" picks a free port
	httpAddr    string
	partitions  int32
	flushEvery  time.Duration
	aggInterval time.Duration
	group       string
	rulesFile   string // ops rules; empty: no ops service
}

// devStack is the embedded pipeline on one machine: a broker, the
// ingester, the aggregator and /metrics, in this process.
type devStack struct {
	opts       stackOptions
	logger     *slog.Logger
	lakeDir    string
	summaryDir string
	events     *schema.Table
	cfg        *fileConfig
	reg        *prometheus.Registry
	metrics    *procMetrics // the series the stack's components share, on reg
	broker     *kafkabroker.Broker
	writer     *ingest.Writer
	src        source
	batch      *inbox.Source // files dropped into <data-dir>/inbox/events/ (dev_inbox.go)
	agg        *aggregate.Service
	ops        *ops.Service // nil without rules
	srv        *httpserver.Server
	webURL     string // the dashboard, with a read token
}

// startStack starts the broker and prepares the ingester, the aggregator
// and the HTTP server; Run runs them.
func startStack(ctx context.Context, logger *slog.Logger, o stackOptions) (st *devStack, err error) {
	s := &devStack{opts: o, logger: logger,
		lakeDir: filepath.Join(o.dataDir, "lake"), summaryDir: filepath.Join(o.dataDir, "summaries")}
	for _, dir := range []string{s.lakeDir, s.summaryDir} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("create data dir: %w", err)
		}
	}
	tables := schema.SampleTables()
	s.events = tables[0]
	for _, t := range tables {
		if t.Name == "events" {
			s.events = t
		}
	}
	s.broker, err = kafkabroker.Start(kafkabroker.Config{
		Addr:    o.kafkaAddr,
		DataDir: filepath.Join(o.dataDir, "kafka"),
		Topics:  map[string]int32{s.events.Topic: o.partitions},
	}, logger)
	if err != nil {
		return nil, fmt.Errorf("start embedded broker: %w", err)
	}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	s.cfg = &fileConfig{
		Kafka:        kafka.Config{Brokers: []string{s.broker.Addr()}, Group: o.group}.WithDefaults(),
		Store:        storeConfig{LocalDir: s.lakeDir},
		Ingest:       ingest.WriterConfig{FlushInterval: o.flushEvery, FlushRecords: 250_000, FlushBytes: 32 << 20}.WithDefaults(),
		HTTP:         httpConfig{Addr: o.httpAddr},
		SummaryStore: &storeConfig{LocalDir: s.summaryDir},
		Aggregate:    aggregate.Config{Interval: o.aggInterval, Lease: time.Minute, IdleTimeout: time.Minute}.WithDefaults(),
		tables:       tables,
	}
	if err := s.cfg.Ingest.Validate(); err != nil {
		return nil, usageError{err}
	}
	if err := s.cfg.Aggregate.Validate(); err != nil {
		return nil, usageError{err}
	}
	s.reg = prometheus.NewRegistry()
	if err := httpserver.RegisterRuntimeCollectors(s.reg); err != nil {
		return nil, err
	}
	s.metrics = newProcMetrics(s.reg)
	if _, s.writer, s.src, err = newIngester(ctx, s.cfg, logger, s.metrics); err != nil {
		return nil, err
	}
	if err := s.startInbox(); err != nil {
		return nil, err
	}
	if s.agg, err = newAggregateService(ctx, s.cfg, logger, s.metrics); err != nil {
		return nil, err
	}
	if o.rulesFile != "" {
		if s.cfg.rules, err = ops.LoadRules(o.rulesFile, tables, s.cfg.Kafka.Brokers); err != nil {
			return nil, err
		}
		s.cfg.Ops = ops.Config{Interval: 5 * time.Second}.WithDefaults()
		if s.ops, err = newOpsService(ctx, s.cfg, logger, s.metrics); err != nil {
			return nil, err
		}
	}
	s.srv = httpserver.New(s.cfg.HTTP.Addr, s.reg, logger)
	if err := s.srv.Listen(); err != nil {
		return nil, fmt.Errorf("http: %w (another sluice dev running? use --http-addr)", err)
	}
	if s.webURL, err = mountDevWeb(ctx, s, logger); err != nil {
		return nil, fmt.Errorf("web: %w", err)
	}
	return s, nil
}

// Run runs the ingester, the aggregator and HTTP until ctx is done, then
// stops them in order: the ingester flushes and commits what it holds, the
// aggregator and HTTP go last.
func (s *devStack) Run(ctx context.Context) error {
	httpCtx, stopHTTP := context.WithCancel(context.WithoutCancel(ctx))
	defer stopHTTP()
	httpDone := make(chan error, 1)
	go func() { httpDone <- s.srv.Run(httpCtx) }()
	aggDone := make(chan error, 1)
	go func() { aggDone <- s.agg.Run(ctx) }()
	opsDone := make(chan error, 1)
	go func() {
		if s.ops == nil {
			opsDone <- nil
			return
		}
		defer s.ops.Close()
		opsDone <- s.ops.Run(ctx)
	}()
	inboxDone := s.runInbox(ctx)
	ingestErr := s.src.Run(ctx)
	ingestErr = errors.Join(ingestErr, <-inboxDone)
	aggErr := errors.Join(<-aggDone, <-opsDone)
	stopHTTP()
	httpErr := <-httpDone
	s.writer.Close()
	return errors.Join(ingestErr, aggErr, httpErr)
}

// Close releases the broker and the writer; call it after Run returned.
func (s *devStack) Close() {
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
func (s *devStack) awaitCommitted(ctx context.Context) error {
	ends, err := s.brokerEnds(ctx)
	if err != nil {
		return err
	}
	bucket, err := objstore.NewLocal(s.lakeDir)
	if err != nil {
		return err
	}
	log := lake.NewCommitLog(bucket)
	source := "kafka:" + s.events.Topic
	for {
		chains, err := log.Chains(ctx, s.events.Name)
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
func (s *devStack) brokerEnds(ctx context.Context) (map[string]int64, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.broker.Addr()))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	listed, err := kadm.NewClient(cl).ListEndOffsets(ctx, s.events.Topic)
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
