package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/sink"
)

// openBucket builds the configured store with retries (outermost, so every
// attempt is measured) and metrics around it.
func openBucket(ctx context.Context, cfg storeConfig, logger *slog.Logger, reg prometheus.Registerer) (sink.Bucket, error) {
	return openNamedBucket(ctx, "raw", cfg, logger, reg)
}

// openNamedBucket labels the store's metrics with name (raw, summary). It
// refuses a store that does not honour conditional writes: every command
// that opens a store writes commit records, leases or summaries through it.
func openNamedBucket(ctx context.Context, name string, cfg storeConfig, logger *slog.Logger, reg prometheus.Registerer) (sink.Bucket, error) {
	var b sink.Bucket
	switch {
	case cfg.LocalDir != "":
		l, err := sink.NewLocal(cfg.LocalDir)
		if err != nil {
			return nil, fmt.Errorf("open local store: %w", err)
		}
		b = l
	case cfg.S3 != nil:
		s, err := sink.OpenS3(ctx, *cfg.S3, logger)
		if err != nil {
			return nil, fmt.Errorf("open s3 store: %w", err)
		}
		b = s
	default:
		return nil, errNoStore
	}
	b = sink.NewInstrumented(b, reg, name)
	b = sink.NewRetrying(b, sink.DefaultRetryPolicy(), logger, reg)
	if err := sink.CheckConditionalWrites(ctx, b); err != nil {
		return nil, fmt.Errorf("%s store: %w", name, err)
	}
	return b, nil
}
