// Package schema turns table definitions (YAML) into Arrow and Parquet schemas,
// decodes JSON records into Arrow record batches, and encodes Arrow records as
// Parquet files. It is the only place that knows what a table looks like; the
// ingest writer and the aggregator get everything from here.
//
// It is a leaf: it must not know object stores, the lake, sources or the
// aggregator.
package schema
