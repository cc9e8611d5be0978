// Package kafka is the Kafka source: it consumes the tables' topics as one
// member of a consumer group and drives an ingest.Pipeline. The lake's
// chains, not the group's offsets, are the truth about progress: a
// partition resumes where its chain ends, and the group offset is committed
// afterwards only as a hint for tools.
//
// It owns the consumer group, fetching, partition assignment and the
// Kafka-only series (lag, fetch errors). It must not know the other sources
// nor how batches become objects: that is the ingest writer's.
package kafka
