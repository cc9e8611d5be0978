package kafkatest

import (
	"log/slog"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sluicehq/sluice/internal/kafkabroker"
)

// NewCluster starts an in-memory, single-broker Kafka cluster with topic
// created with the given partitions, closed after the test. Its address is
// ListenAddrs().
func NewCluster(tb testing.TB, topic string, partitions int32) *kfake.Cluster {
	tb.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topic))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Close)
	return c
}

// StartBroker starts the project's in-process broker (kafkabroker, as
// `sluice broker` runs it) with cfg, on a free loopback port unless
// cfg.Addr says otherwise, logging nowhere; it is closed after the test
// (Close may be called earlier too).
func StartBroker(tb testing.TB, cfg kafkabroker.Config) *kafkabroker.Broker {
	tb.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	b, err := kafkabroker.Start(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(b.Close)
	return b
}
