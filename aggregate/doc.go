// Package aggregate turns committed raw objects into windowed summaries on
// a schedule, recomputes the windows that late data changes, and compacts
// the raw objects of closed hours.
//
// It owns windows, watermarks, accumulators and sketches, the summary file
// layout, the schedule, compaction and backfill. It must not know how records
// reach the lake: it imports neither ingest nor any source, and finds raw data
// only through the commit records of package lake.
package aggregate
