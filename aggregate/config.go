package aggregate

import (
	"errors"
	"fmt"
	"time"
)

// Config says how often the aggregator runs and how it shares work.
type Config struct {
	// Interval between runs of a table's job.
	Interval time.Duration `yaml:"interval"`
	// IdleTimeout: a partition that committed nothing for this long (relative
	// to the table's newest commit) stops holding the watermark back.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// Lease is how long one aggregator may work on a table before another
	// may take over; a run that outlives its lease stops writing.
	Lease time.Duration `yaml:"lease"`
	// CompactEvery runs compaction of closed hours' raw objects this often;
	// negative turns it off.
	CompactEvery time.Duration `yaml:"compact_every"`
	// Compaction tunes it.
	Compaction CompactorConfig `yaml:"compaction"`
	// Sweep deletes what readers no longer see and applies retention (see
	// SweepConfig); every table is swept, each under its own lease.
	Sweep SweepConfig `yaml:"sweep"`
}

// Defaults.
const (
	DefaultInterval     = time.Minute
	DefaultIdleTimeout  = 5 * time.Minute
	DefaultCompactEvery = 5 * time.Minute
)

var (
	ErrBadInterval = errors.New("aggregate.interval must be positive")
	ErrBadLease    = errors.New("aggregate.lease must be longer than the interval")
	ErrBadIdle     = errors.New("aggregate.idle_timeout must not be negative")
)

// WithDefaults fills zero fields.
func (c Config) WithDefaults() Config {
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.Lease == 0 {
		c.Lease = max(5*time.Minute, 2*c.Interval)
	}
	if c.CompactEvery == 0 {
		c.CompactEvery = DefaultCompactEvery
	}
	c.Sweep = c.Sweep.WithDefaults()
	return c
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case c.Interval <= 0:
		return fmt.Errorf("aggregate: %w (got %s)", ErrBadInterval, c.Interval)
	case c.Lease <= c.Interval:
		return fmt.Errorf("aggregate: %w (lease %s, interval %s)", ErrBadLease, c.Lease, c.Interval)
	case c.IdleTimeout < 0:
		return fmt.Errorf("aggregate: %w", ErrBadIdle)
	}
	if err := c.Sweep.validate(c.Compaction); err != nil {
		return fmt.Errorf("aggregate: %w", err)
	}
	return nil
}
