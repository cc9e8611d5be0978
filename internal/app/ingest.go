package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/sluicehq/sluice/ingest"
	"github.com/sluicehq/sluice/ingest/kafka"
	"github.com/sluicehq/sluice/ingest/kinesis"
	"github.com/sluicehq/sluice/internal/config"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/objstore/client"
	"github.com/sluicehq/sluice/schema"
)

// kafkaCheckTimeout bounds the check at start that the brokers accept the
// configured credentials and TLS settings (see kafka.CheckKafka). Long
// enough for a broker that is still starting.
const kafkaCheckTimeout = 30 * time.Second

// Ingest runs the ingester and its HTTP endpoint until ctx is done: the
// sources stop first (flushing and committing what they hold), then HTTP.
func Ingest(ctx context.Context, c Console, configPath string) error {
	cfg, err := LoadRequiredConfig(configPath)
	if err != nil {
		return err
	}
	logger := c.Logger
	setMemoryLimit(3*cfg.Ingest.MemoryBudget, logger)
	reg, err := newRegistry()
	if err != nil {
		return err
	}
	secOpts, err := cfg.Kafka.SecurityOpts()
	if err != nil {
		return err
	}
	if readsKafka(cfg.Tables) {
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
	srv, err := listenHTTP(cfg.HTTP.Addr, reg, bucket, logger)
	if err != nil {
		return err
	}
	logger.Info("ingest starting", "store", bucket.Name(), "brokers", cfg.Kafka.Brokers, "group", cfg.Kafka.Group, "http", srv.Addr())
	g := newGroup(ctx)
	g.add(ctx, src.Run)
	g.add(ctx, srv.Run)
	if err := g.run(); err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	return nil
}

// newIngester opens the raw store and builds the writer and the sources
// over it (Kafka, and Kinesis for tables that name a stream): what
// `ingest`, `dev` and `loadtest --embedded` share. The caller closes the
// writer.
func newIngester(ctx context.Context, cfg *config.File, logger *slog.Logger, pm *procMetrics, opts ...kgo.Opt) (objstore.Bucket, *ingest.Writer, source, error) {
	bucket, err := client.NewBucket(ctx, "raw", cfg.Store, logger, pm.stores())
	if err != nil {
		return nil, nil, nil, err
	}
	if err := CheckTableFields(ctx, bucket, cfg.Tables, logger); err != nil {
		return nil, nil, nil, err
	}
	w, err := ingest.NewWriter(cfg.Ingest, bucket, logger, pm.writers())
	if err != nil {
		return nil, nil, nil, err
	}
	var srcs sources
	if readsKafka(cfg.Tables) {
		src, err := kafka.NewSource(cfg.Kafka, cfg.Tables, w, logger, kafka.NewMetrics(pm.registerer()), opts...)
		if err != nil {
			w.Close()
			return nil, nil, nil, err
		}
		srcs = append(srcs, src)
	}
	if slices.ContainsFunc(cfg.Tables, func(t *schema.Table) bool { return t.SourceKind() == schema.SourceKinesis }) {
		src, err := kinesis.NewSource(ctx, cfg.Kinesis, cfg.Tables, w, bucket, logger, kinesis.NewMetrics(pm.registerer()))
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
