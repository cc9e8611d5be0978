package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/aggregate"
	"github.com/sluicehq/sluice/ingest"
	"github.com/sluicehq/sluice/ingest/kafka"
	"github.com/sluicehq/sluice/internal/httpserver"
	"github.com/sluicehq/sluice/internal/kafkabroker"
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
	broker     *kafkabroker.Broker
	writer     *ingest.Writer
	src        *kafka.Source
	agg        *aggregate.Service
	srv        *httpserver.Server
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
	if _, s.writer, s.src, err = newIngester(ctx, s.cfg, logger, s.reg); err != nil {
		return nil, err
	}
	if s.agg, err = newAggregateService(ctx, s.cfg, logger, s.reg); err != nil {
		return nil, err
	}
	s.srv = httpserver.New(s.cfg.HTTP.Addr, s.reg, logger)
	if err := s.srv.Listen(); err != nil {
		return nil, fmt.Errorf("http: %w (another sluice dev running? use --http-addr)", err)
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
	ingestErr := s.src.Run(ctx)
	aggErr := <-aggDone
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
