package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/sluicehq/sluice/objstore"
)

// Config names one object store: exactly one of LocalDir and S3.
type Config struct {
	// LocalDir stores objects in a local directory (dev, tests, one machine).
	LocalDir string `yaml:"local_dir"`
	// S3 stores objects in S3 or an S3-compatible server.
	S3 *objstore.S3Config `yaml:"s3"`
}

var (
	// ErrNoStore: neither local_dir nor s3 is set.
	ErrNoStore = errors.New("store: set exactly one of local_dir and s3")
	// ErrTwoStores: both are set.
	ErrTwoStores = errors.New("store: local_dir and s3 are both set; choose one")
)

// NewBucket opens the store cfg names, with retries (outermost, so every
// attempt is measured) and metrics labelled name (raw, summary, ...) around
// it, counted in m (the process's store series; nil: unregistered). It
// refuses a store that does not honour conditional writes: every command
// that opens a store writes commit records, leases or summaries through it.
func NewBucket(ctx context.Context, name string, cfg Config, logger *slog.Logger, m *objstore.Metrics) (objstore.Bucket, error) {
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
		return nil, ErrNoStore
	}
	b = objstore.NewInstrumented(b, m, name)
	b = objstore.NewRetrying(b, objstore.DefaultRetryPolicy(), logger, m)
	if err := objstore.CheckConditionalWrites(ctx, b); err != nil {
		return nil, fmt.Errorf("%s store: %w", name, err)
	}
	return b, nil
}
