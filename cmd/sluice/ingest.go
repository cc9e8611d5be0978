package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/ingest"
	"github.com/sluicehq/sluice/ingest/kafka"
	"github.com/sluicehq/sluice/internal/httpserver"
	"github.com/sluicehq/sluice/objstore"
)

func newIngestCmd(g *globals) *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use:   "ingest --config sluice.yaml",
		Short: "Consume Kafka topics into committed raw Parquet objects (one consumer-group member)",
		Long: `Runs one member of the ingest consumer group: it drains the topics of the
configured tables into raw Parquet objects in the configured store and commits
them exactly once through the commit log. Run more processes with the same
kafka.group to scale out; partitions are the unit of work.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if configPath == "" {
				return usageErrorf("--config is required")
			}
			cfg, err := loadConfig(configPath)
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
	// Wrong credentials or TLS settings stop the process with a reason
	// instead of leaving it fetching nothing with warnings.
	checkCtx, cancelCheck := context.WithTimeout(ctx, kafkaCheckTimeout)
	err = kafka.CheckKafka(checkCtx, cfg.Kafka, secOpts...)
	cancelCheck()
	if err != nil {
		return err
	}
	bucket, w, src, err := newIngester(ctx, cfg, logger, reg, secOpts...)
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

// newIngester opens the raw store and builds the writer and the Kafka
// source over it: what `ingest`, `dev` and `loadtest --embedded` share. The
// caller closes the writer.
func newIngester(ctx context.Context, cfg *fileConfig, logger *slog.Logger, reg prometheus.Registerer, opts ...kgo.Opt) (objstore.Bucket, *ingest.Writer, *kafka.Source, error) {
	bucket, err := openBucket(ctx, cfg.Store, logger, reg)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := checkTableFields(ctx, bucket, cfg.tables, logger); err != nil {
		return nil, nil, nil, err
	}
	w, err := ingest.NewWriter(cfg.Ingest, bucket, logger, reg)
	if err != nil {
		return nil, nil, nil, err
	}
	src, err := kafka.NewSource(cfg.Kafka, cfg.tables, w, logger, reg, opts...)
	if err != nil {
		w.Close()
		return nil, nil, nil, err
	}
	return bucket, w, src, nil
}
