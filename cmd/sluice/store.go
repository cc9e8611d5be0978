package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/objstore"
)

// openBucket builds the configured store with retries (outermost, so every
// attempt is measured) and metrics around it.
func openBucket(ctx context.Context, cfg storeConfig, logger *slog.Logger, reg prometheus.Registerer) (objstore.Bucket, error) {
	return openNamedBucket(ctx, "raw", cfg, logger, reg)
}

// openNamedBucket labels the store's metrics with name (raw, summary).
func openNamedBucket(ctx context.Context, name string, cfg storeConfig, logger *slog.Logger, reg prometheus.Registerer) (objstore.Bucket, error) {
	var b objstore.Bucket
	switch {
	case cfg.LocalDir != "":
		l, err := objstore.NewLocal(cfg.LocalDir)
		if err != nil {
			return nil, fmt.Errorf("open local store: %w", err)
		}
		b = l
	case cfg.S3 != nil:
		s, err := objstore.OpenS3(ctx, *cfg.S3, logger)
		if err != nil {
			return nil, fmt.Errorf("open s3 store: %w", err)
		}
		b = s
	default:
		return nil, errNoStore
	}
	b = objstore.NewInstrumented(b, reg, name)
	return objstore.NewRetrying(b, objstore.DefaultRetryPolicy(), logger, reg), nil
}
