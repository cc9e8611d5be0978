package kinesis

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Named config errors, so callers and tests can tell them apart.
var (
	ErrNoRegion         = errors.New("kinesis.region is empty (and AWS_REGION is not set)")
	ErrBadStartPosition = errors.New("kinesis.start_position must be trim_horizon or latest")
	ErrBadLease         = errors.New("kinesis.lease_duration must be at least 3 times kinesis.lease_renew")
	ErrBadPoll          = errors.New("kinesis.poll_interval must be at least 200ms (5 GetRecords calls per second per shard)")
	ErrHalfCredentials  = errors.New("kinesis.access_key_id and kinesis.secret_access_key go together")
)

// Config says which Kinesis (or Kinesis-compatible) endpoint to read and
// how processes share its shards.
type Config struct {
	// Endpoint overrides the AWS endpoint: a Kinesis-compatible server
	// (kinesalite, LocalStack) or a VPC endpoint. Empty: AWS's own.
	Endpoint string `yaml:"endpoint"`
	// Region of the streams; empty: AWS_REGION and the usual AWS config.
	Region string `yaml:"region"`
	// AccessKeyID and SecretAccessKey (and SessionToken) are static
	// credentials; empty: the usual AWS chain (AWS_ACCESS_KEY_ID and
	// AWS_SECRET_ACCESS_KEY, the shared config files, an instance or task
	// role). The secret is never printed (see LogValue).
	AccessKeyID     string `yaml:"access_key_id"`
	SecretAccessKey string `yaml:"secret_access_key"`
	SessionToken    string `yaml:"session_token"`
	// StartPosition is where a shard with no chain starts: trim_horizon
	// (default: the oldest record kept) or latest (records put after the
	// shard's chain is created). Resolved once, into the chain's genesis;
	// shards created by resharding after that always start at
	// trim_horizon, so nothing of a child is skipped.
	StartPosition string `yaml:"start_position"`
	// PollInterval is the least time between two GetRecords calls on one
	// shard. Kinesis allows 5 calls per second per shard over all readers;
	// one process reads a shard at a time (leases), so the default 250ms
	// keeps each shard at 4 per second. Throttling doubles the wait (up to
	// 10s); each answered call halves it again.
	PollInterval time.Duration `yaml:"poll_interval"`
	// MaxRecords bounds one GetRecords answer (Kinesis: at most 10000).
	MaxRecords int32 `yaml:"max_records"`
	// LeaseDuration is how long a shard's lease lasts without renewal: how
	// long the shards of a killed process wait before others take them.
	// LeaseRenew is how often leases are renewed, shards listed and
	// balanced. Defaults 20s and 5s.
	LeaseDuration time.Duration `yaml:"lease_duration"`
	LeaseRenew    time.Duration `yaml:"lease_renew"`
	// Owner names this process in leases; default host name, pid and a
	// random suffix. Each process needs its own.
	Owner string `yaml:"owner"`
}

// WithDefaults fills zero fields with the defaults.
func (c Config) WithDefaults() Config {
	if c.StartPosition == "" {
		c.StartPosition = "trim_horizon"
	}
	if c.PollInterval == 0 {
		c.PollInterval = 250 * time.Millisecond
	}
	if c.MaxRecords == 0 {
		c.MaxRecords = 10_000
	}
	if c.LeaseDuration == 0 {
		c.LeaseDuration = 20 * time.Second
	}
	if c.LeaseRenew == 0 {
		c.LeaseRenew = 5 * time.Second
	}
	return c
}

// Validate reports the first invalid field. A missing region is found when
// the client is built (it may come from the environment).
func (c Config) Validate() error {
	switch {
	case c.StartPosition != "trim_horizon" && c.StartPosition != "latest":
		return fmt.Errorf("kinesis: %w (got %q)", ErrBadStartPosition, c.StartPosition)
	case c.PollInterval < 200*time.Millisecond:
		return fmt.Errorf("kinesis: %w (got %s)", ErrBadPoll, c.PollInterval)
	case c.LeaseRenew <= 0 || c.LeaseDuration < 3*c.LeaseRenew:
		return fmt.Errorf("kinesis: %w (got %s and %s)", ErrBadLease, c.LeaseDuration, c.LeaseRenew)
	case (c.AccessKeyID == "") != (c.SecretAccessKey == ""):
		return fmt.Errorf("kinesis: %w", ErrHalfCredentials)
	case c.MaxRecords < 1 || c.MaxRecords > 10_000:
		return fmt.Errorf("kinesis: max_records must be 1 to 10000 (got %d)", c.MaxRecords)
	}
	return nil
}

// LogValue prints the config without its secret.
func (c Config) LogValue() slog.Value {
	secret := ""
	if c.SecretAccessKey != "" {
		secret = "[redacted]"
	}
	return slog.GroupValue(slog.String("endpoint", c.Endpoint), slog.String("region", c.Region),
		slog.String("access_key_id", c.AccessKeyID), slog.String("secret_access_key", secret),
		slog.String("start_position", c.StartPosition), slog.String("owner", c.Owner))
}

// String prints the config without its secret, also through fmt.
func (c Config) String() string { return c.LogValue().String() }
