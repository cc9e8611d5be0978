// Package kinesis is the Kinesis source: it reads the shards of the tables'
// streams (on AWS or any Kinesis-compatible server) and drives an
// ingest.Pipeline. Processes share a stream's shards through leases kept in
// the lake's bucket; a shard's chain in the commit log is its checkpoint, so
// a shard resumes after the last record committed, whoever reads it next.
// A shard closed by a split or merge is read to its end, which an end link
// records; its children are read only after that, and it is never read
// again.
//
// It owns shard reading, shard leases and the Kinesis-only series. It must
// not know the other sources nor how batches become objects: that is the
// ingest writer's.
package kinesis
