package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/internal/config"
	"github.com/sluicehq/sluice/internal/httpserver"
	"github.com/sluicehq/sluice/objstore"
)

// Console is where a command writes: results to Stdout, progress bars to
// Stderr, and its log to Logger.
type Console struct {
	Stdout io.Writer
	Stderr io.Writer
	Logger *slog.Logger
}

// UsageError marks an error in the command line itself (exit code 2):
// nothing ran.
type UsageError struct{ Err error }

func (e UsageError) Error() string { return e.Err.Error() }
func (e UsageError) Unwrap() error { return e.Err }

// Usagef returns a UsageError for bad flags or arguments.
func Usagef(format string, args ...any) error {
	return UsageError{fmt.Errorf(format, args...)}
}

// LoadRequiredConfig is config.Load for commands whose --config is required.
func LoadRequiredConfig(path string) (*config.File, error) {
	if path == "" {
		return nil, Usagef("--config is required")
	}
	return config.Load(path)
}

// NewLogger builds the process logger from the --log-level and --log-format
// values. Unknown values are usage errors, not silently defaulted, so a typo
// in a deployment manifest is caught at start.
func NewLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	switch strings.ToLower(level) {
	case "debug":
		lv = slog.LevelDebug
	case "info", "":
		lv = slog.LevelInfo
	case "warn", "warning":
		lv = slog.LevelWarn
	case "error":
		lv = slog.LevelError
	default:
		return nil, Usagef("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, Usagef("--log-format %q: want text or json", format)
	}
}

// errNoSummaries: the command writes or reads summaries.
var errNoSummaries = errors.New("summary_store is required to aggregate")

// newRegistry is a long-running command's registry: its components'
// metrics and the Go runtime's and the process's, served on /metrics.
func newRegistry() (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	if err := httpserver.RegisterRuntimeCollectors(reg); err != nil {
		return nil, err
	}
	return reg, nil
}

// listenHTTP binds the process's endpoint (/metrics, /healthz, /readyz),
// ready when bucket answers if bucket is not nil. Serving starts in the
// command's run group.
func listenHTTP(addr string, reg *prometheus.Registry, bucket objstore.BucketReader, logger *slog.Logger) (*httpserver.Server, error) {
	srv := httpserver.New(addr, reg, logger)
	if bucket != nil {
		srv.AddReadiness("object-store", func(ctx context.Context) error {
			_, err := bucket.Attributes(ctx, "_sluice/readyz-probe")
			if err != nil && !errors.Is(err, objstore.ErrNotExist) {
				return err
			}
			return nil
		})
	}
	if err := srv.Listen(); err != nil {
		return nil, err
	}
	return srv, nil
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

// processOwner names this process in leases and records: host/pid.
func processOwner() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s/%d", host, os.Getpid())
}
