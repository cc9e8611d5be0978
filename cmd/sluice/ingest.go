package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/sluicehq/sluice/ingest"
	"github.com/sluicehq/sluice/ingest/kafka"
	"github.com/sluicehq/sluice/ingest/kinesis"
	"github.com/sluicehq/sluice/internal/httpserver"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/schema"
)

func newIngestCmd(g *globals) *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use:   "ingest --config sluice.yaml",
		Short: "Consume Kafka topics and Kinesis streams into committed raw Parquet objects",
		Long: `Runs one member of the ingest consumer group: it drains the topics of the
configured tables into raw Parquet objects in the configured store and commits
them exactly once through the commit log. Run more processes with the same
kafka.group to scale out; partitions are the unit of work. Tables that name a
Kinesis stream are read too: processes share its shards through leases in the
store.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadRequiredConfig(configPath)
			if err != nil {
				return err
			}
			return runIngest(cmd.Context(), g, cfg)
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "", "path to sluice.yaml")
	return cmd
}

// runIngest runs the ingester and its HTTP endpoint until ctx is done.
func runIngest(ctx context.Context, g *globals, cfg *fileConfig) error {
	logger := g.Logger()
	setMemoryLimit(3*cfg.Ingest.MemoryBudget, logger)
	reg := prometheus.NewRegistry()
	if err := httpserver.RegisterRuntimeCollectors(reg); err != nil {
		return err
	}
	secOpts, err := cfg.Kafka.SecurityOpts()
	if err != nil {
		return err
	}
	if readsKafka(cfg.tables) {
		// Wrong credentials or TLS settings stop the process with a reason
		// instead of leaving it fetching nothing with warnings.
		checkCtx, cancelCheck := context.WithTimeout(ctx, kafkaCheckTimeout)
		err = kafka.CheckKafka(checkCtx, cfg.Kafka, secOpts...)
		cancelCheck()
		if err != nil {
			return err
		}
	}
	bucket, w, src, err := newIngester(ctx, cfg, logger, newProcMetrics(reg), secOpts...)
	if err != nil {
		return err
	}
	defer w.Close()
	srv := httpserver.New(cfg.HTTP.Addr, reg, logger)
	srv.AddReadiness("object-store", func(ctx context.Context) error {
		_, err := bucket.Attributes(ctx, "_sluice/readyz-probe")
		if err != nil && !errors.Is(err, objstore.ErrNotExist) {
			return err
		}
		return nil
	})
	if err := srv.Listen(); err != nil {
		return err
	}
	logger.Info("ingest starting", "store", bucket.Name(), "brokers", cfg.Kafka.Brokers, "group", cfg.Kafka.Group, "http", srv.Addr())

	httpCtx, stopHTTP := context.WithCancel(context.WithoutCancel(ctx))
	httpDone := make(chan error, 1)
	go func() { httpDone <- srv.Run(httpCtx) }()
	runErr := src.Run(ctx)
	stopHTTP()
	if err := <-httpDone; err != nil && runErr == nil {
		runErr = err
	}
	if runErr != nil {
		return fmt.Errorf("ingest: %w", runErr)
	}
	return nil
}

// setMemoryLimit makes the garbage collector work harder as the heap nears
// limit bytes, so that RSS follows the configured budget instead of
// doubling with GOGC. GOMEMLIMIT, when set, wins.
func setMemoryLimit(limit int64, logger *slog.Logger) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	debug.SetMemoryLimit(limit)
	logger.Debug("soft memory limit set", "bytes", limit)
}

// newIngester opens the raw store and builds the writer and the sources
// over it (Kafka, and Kinesis for tables that name a stream): what
// `ingest`, `dev` and `loadtest --embedded` share. The caller closes the
// writer.
func newIngester(ctx context.Context, cfg *fileConfig, logger *slog.Logger, pm *procMetrics, opts ...kgo.Opt) (objstore.Bucket, *ingest.Writer, source, error) {
	bucket, err := openBucket(ctx, cfg.Store, logger, pm)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := checkTableFields(ctx, bucket, cfg.tables, logger); err != nil {
		return nil, nil, nil, err
	}
	w, err := ingest.NewWriter(cfg.Ingest, bucket, logger, pm.writers())
	if err != nil {
		return nil, nil, nil, err
	}
	var srcs sources
	if readsKafka(cfg.tables) {
		src, err := kafka.NewSource(cfg.Kafka, cfg.tables, w, logger, kafka.NewMetrics(pm.registerer()), opts...)
		if err != nil {
			w.Close()
			return nil, nil, nil, err
		}
		srcs = append(srcs, src)
	}
	if slices.ContainsFunc(cfg.tables, func(t *schema.Table) bool { return t.SourceKind() == schema.SourceKinesis }) {
		src, err := kinesis.NewSource(ctx, cfg.Kinesis, cfg.tables, w, bucket, logger, kinesis.NewMetrics(pm.registerer()))
		if err != nil {
			w.Close()
			return nil, nil, nil, err
		}
		srcs = append(srcs, src)
	}
	return bucket, w, srcs, nil
}

// readsKafka: some table reads a Kafka topic, or no table names a stream
// (the Kafka source then says what is missing, as before).
func readsKafka(tables []*schema.Table) bool {
	has := func(kind string) bool {
		return slices.ContainsFunc(tables, func(t *schema.Table) bool { return t.SourceKind() == kind })
	}
	return has(schema.SourceKafka) || !has(schema.SourceKinesis)
}

// source is one of the ingester's sources.
type source interface {
	Run(ctx context.Context) error
}

// sources run together until ctx is done or one fails, which stops the
// others.
type sources []source

func (ss sources) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, s := range ss {
		g.Go(func() error {
			if err := s.Run(gctx); err != nil {
				return err
			}
			if ctx.Err() == nil {
				return errors.New("a source stopped on its own")
			}
			return nil
		})
	}
	return g.Wait()
}
