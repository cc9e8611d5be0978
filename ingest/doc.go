// Package ingest drains sources into raw Parquet objects and commits them
// through the commit log, so that every delivered record ends up in exactly
// one committed object (or in the dead-letter area with its reason).
//
// It owns the source seam (Pipeline, Partition, rewinds), the writer that
// encodes and uploads raw objects, and the series every source shares. It
// must not know any one source (Kafka, Kinesis, files, HTTP) nor anything
// after the commit: it never imports aggregate.
package ingest
