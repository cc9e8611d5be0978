package ingest

import (
	"errors"
	"fmt"
	"time"
)

// WriterConfig says when a partition's buffer becomes an object and how much
// memory all buffers together may hold.
type WriterConfig struct {
	// FlushRecords flushes a partition once it buffers this many records.
	FlushRecords int `yaml:"flush_records"`
	// FlushBytes flushes a partition once its buffered record values reach
	// this many bytes (input bytes, before decoding). Larger objects are
	// cheaper to read and list; smaller ones make data visible sooner.
	FlushBytes int64 `yaml:"flush_bytes"`
	// FlushInterval flushes a partition this long after its first buffered
	// record, also when no more records arrive (idle partitions).
	FlushInterval time.Duration `yaml:"flush_interval"`
	// FlushIdle flushes a partition once no record has arrived for it for
	// this long, so that the end of a burst is visible without waiting out
	// flush_interval (Flink's file sink calls this the inactivity
	// interval). 0 turns it off: a partition whose traffic comes in bursts
	// further apart than this would otherwise write an object per burst.
	FlushIdle time.Duration `yaml:"flush_idle"`
	// MemoryBudget bounds the input bytes held in buffers and in flushes not
	// yet committed. When it is used up, fetching pauses until uploads finish:
	// a slow object store causes backpressure, not growth. The process needs
	// about three times this much memory in all (decoded batches, encoding,
	// the client's fetch buffers); `sluice ingest` sets the Go runtime's soft
	// memory limit to that unless GOMEMLIMIT is set.
	MemoryBudget int64 `yaml:"memory_budget"`
	// Compression of raw Parquet objects: zstd (default), snappy or none.
	Compression string `yaml:"compression"`
	// Workers decode and encode in parallel; 0 means GOMAXPROCS.
	Workers int `yaml:"workers"`
	// FlushTimeout bounds one flush attempt (uploads plus commit, with their
	// retries). A flush that fails rewinds its partition to the last commit.
	FlushTimeout time.Duration `yaml:"flush_timeout"`
}

// Defaults for WriterConfig.
const (
	DefaultFlushRecords  = 1_000_000
	DefaultFlushBytes    = 64 << 20
	DefaultFlushInterval = 30 * time.Second
	DefaultMemoryBudget  = 128 << 20
	DefaultCompression   = "zstd"
	DefaultFlushTimeout  = 2 * time.Minute
)

// Named config errors, so callers and tests can tell them apart.
var (
	ErrBadFlushRecords  = errors.New("flush_records must be positive")
	ErrBadFlushBytes    = errors.New("flush_bytes must be positive")
	ErrBadFlushInterval = errors.New("flush_interval must be positive")
	ErrBadFlushIdle     = errors.New("flush_idle must not be negative")
	ErrBadMemoryBudget  = errors.New("memory_budget must be at least flush_bytes")
	ErrBadCompression   = errors.New("compression must be zstd, snappy or none")
	ErrBadWorkers       = errors.New("workers must not be negative")
)

// WithDefaults fills zero fields with the defaults.
func (c WriterConfig) WithDefaults() WriterConfig {
	if c.FlushRecords == 0 {
		c.FlushRecords = DefaultFlushRecords
	}
	if c.FlushBytes == 0 {
		c.FlushBytes = DefaultFlushBytes
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = DefaultFlushInterval
	}
	if c.MemoryBudget == 0 {
		c.MemoryBudget = max(DefaultMemoryBudget, 2*c.FlushBytes)
	}
	if c.Compression == "" {
		c.Compression = DefaultCompression
	}
	if c.FlushTimeout == 0 {
		c.FlushTimeout = DefaultFlushTimeout
	}
	return c
}

// Validate reports the first invalid field.
func (c WriterConfig) Validate() error {
	switch {
	case c.FlushRecords <= 0:
		return fmt.Errorf("ingest: %w (got %d)", ErrBadFlushRecords, c.FlushRecords)
	case c.FlushBytes <= 0:
		return fmt.Errorf("ingest: %w (got %d)", ErrBadFlushBytes, c.FlushBytes)
	case c.FlushInterval <= 0:
		return fmt.Errorf("ingest: %w (got %s)", ErrBadFlushInterval, c.FlushInterval)
	case c.FlushIdle < 0:
		return fmt.Errorf("ingest: %w (got %s)", ErrBadFlushIdle, c.FlushIdle)
	case c.MemoryBudget < c.FlushBytes:
		return fmt.Errorf("ingest: %w (budget %d, flush_bytes %d)", ErrBadMemoryBudget, c.MemoryBudget, c.FlushBytes)
	case c.Workers < 0:
		return fmt.Errorf("ingest: %w (got %d)", ErrBadWorkers, c.Workers)
	}
	switch c.Compression {
	case "zstd", "snappy", "none":
	default:
		return fmt.Errorf("ingest: %w (got %q)", ErrBadCompression, c.Compression)
	}
	return nil
}
