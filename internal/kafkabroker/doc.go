// Package kafkabroker runs a single-node, Kafka-protocol broker inside the
// process, built on franz-go's kfake. It is what `sluice broker`, the dev
// stack and the end-to-end, crash and benchmark tests talk to when no real
// Kafka is around.
//
// Durability: with DataDir set, every produced batch is written to a segment
// file before the produce is acknowledged. Those writes survive kill -9 of the
// process (they are in the OS page cache), so SyncWrites is not needed to
// survive a process crash; it is needed to survive a machine crash or power
// loss, because without it the files are only fsynced on segment roll and on
// Close.
//
// Idempotent producers: on start the broker rebuilds each producer's last
// sequence numbers from the batches in its segments, as Apache Kafka does,
// so a retry of a batch appended just before a kill -9 is answered with its
// original offset instead of being appended again (seqwindows.go).
//
// It knows nothing of Sluice's packages: it is a Kafka broker, nothing more.
package kafkabroker
