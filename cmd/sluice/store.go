package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/sluicehq/sluice/objstore"
)

// openBucket builds the configured store with retries (outermost, so every
// attempt is measured) and metrics around it.
func openBucket(ctx context.Context, cfg storeConfig, logger *slog.Logger, pm *procMetrics) (objstore.Bucket, error) {
	return openNamedBucket(ctx, "raw", cfg, logger, pm)
}

// openNamedBucket labels the store's metrics with name (raw, summary). It
// refuses a store that does not honour conditional writes: every command
// that opens a store writes commit records, leases or summaries through it.
func openNamedBucket(ctx context.Context, name string, cfg storeConfig, logger *slog.Logger, pm *procMetrics) (objstore.Bucket, error) {
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
	b = objstore.NewInstrumented(b, pm.stores(), name)
	b = objstore.NewRetrying(b, objstore.DefaultRetryPolicy(), logger, pm.stores())
	if err := objstore.CheckConditionalWrites(ctx, b); err != nil {
		return nil, fmt.Errorf("%s store: %w", name, err)
	}
	return b, nil
}
