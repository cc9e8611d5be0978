// Package kafkatest starts Kafka brokers for tests: the in-memory cluster
// of franz-go's kfake, and the project's own broker. It is apart from
// testkit so that tests that need no broker, and the DuckDB module's, do
// not depend on them.
package kafkatest
