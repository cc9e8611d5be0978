// Package kafkatest starts the in-memory Kafka cluster of franz-go's kfake
// for tests. It is apart from testkit so that tests that need no broker,
// and the DuckDB module's, do not depend on kfake.
package kafkatest

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
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
