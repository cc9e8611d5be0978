package kafka

import (
	"errors"
	"fmt"
	"time"
)

// Named config errors, so callers and tests can tell them apart.
var (
	ErrNoBrokers      = errors.New("kafka.brokers is empty")
	ErrNoGroup        = errors.New("kafka.group is empty")
	ErrBadStartOffset = errors.New("kafka.start_offset must be earliest or latest")
)

// Config says where to consume from.
type Config struct {
	Brokers  []string `yaml:"brokers"`
	Group    string   `yaml:"group"`
	ClientID string   `yaml:"client_id"`
	// StartOffset is where a partition with no chain starts: earliest
	// (default) or latest. It is resolved once, when the partition is first
	// opened, into the chain's genesis link; no later owner resolves it again.
	// With latest, partitions added to the topic after the table first
	// started begin at earliest, so records produced before they were
	// noticed are kept.
	StartOffset string `yaml:"start_offset"`
	// FetchMaxBytes bounds one fetch response; with MaxConcurrentFetches it
	// bounds what the client buffers ahead of the writer.
	FetchMaxBytes int32 `yaml:"fetch_max_bytes"`
	// FetchMaxPartitionBytes bounds one partition's share of a fetch. Larger
	// means fewer round trips per byte when a few partitions carry the load.
	FetchMaxPartitionBytes int32 `yaml:"fetch_max_partition_bytes"`
	// InstanceID turns on static group membership (KIP-345): a member that
	// restarts under the same id (a StatefulSet pod name, say) gets its
	// partitions back at once instead of after the session timeout. Each
	// running process needs its own; ${HOSTNAME} is a good choice.
	InstanceID string `yaml:"instance_id"`
	// MetadataMaxAge is how often the topics' metadata is refreshed at the
	// latest, which bounds how long partitions added to a topic go
	// unnoticed (their records wait, none is skipped). Default 5m, the
	// client's.
	MetadataMaxAge time.Duration `yaml:"metadata_max_age"`
	// SessionTimeout and RebalanceTimeout of the consumer group.
	SessionTimeout   time.Duration `yaml:"session_timeout"`
	RebalanceTimeout time.Duration `yaml:"rebalance_timeout"`
	// SASL and TLS secure the connections to the brokers (see kafka_auth.go);
	// SecurityOpts turns them into client options.
	SASL SASL `yaml:"sasl"`
	TLS  TLS  `yaml:"tls"`
}

// WithDefaults fills zero fields with the defaults.
func (c Config) WithDefaults() Config {
	if c.Group == "" {
		c.Group = "sluice"
	}
	if c.ClientID == "" {
		c.ClientID = "sluice"
	}
	if c.StartOffset == "" {
		c.StartOffset = "earliest"
	}
	if c.FetchMaxBytes == 0 {
		c.FetchMaxBytes = 16 << 20
	}
	if c.FetchMaxPartitionBytes == 0 {
		c.FetchMaxPartitionBytes = 1 << 20
	}
	if c.SessionTimeout == 0 {
		c.SessionTimeout = 45 * time.Second
	}
	if c.RebalanceTimeout == 0 {
		c.RebalanceTimeout = 60 * time.Second
	}
	return c
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case len(c.Brokers) == 0:
		return fmt.Errorf("kafka: %w", ErrNoBrokers)
	case c.Group == "":
		return fmt.Errorf("kafka: %w", ErrNoGroup)
	case c.StartOffset != "earliest" && c.StartOffset != "latest":
		return fmt.Errorf("kafka: %w (got %q)", ErrBadStartOffset, c.StartOffset)
	}
	if err := c.SASL.Validate(); err != nil {
		return err
	}
	return c.TLS.Validate()
}
