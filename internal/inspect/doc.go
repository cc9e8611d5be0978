// Package inspect shows what Sluice wrote: the schema, rows, event-time
// range and first rows of Parquet objects, commit records and dead letters,
// locally or in S3, and over a lake only the committed set. It owns the
// reports and their printing; the command line only parses flags.
//
// It reads through the lake and the object store only, and must not know how
// objects are written.
package inspect
