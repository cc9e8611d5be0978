// Package lakefiles lists a table's committed objects for readers outside
// Sluice (DuckDB, Spark, pyarrow): exactly the set lake.CommitLog's
// LiveObjects names, as paths or URLs, a DuckDB view, or JSON lines.
//
// A glob over a table's prefix is not that set: it also reads the objects
// of flushes that crashed before their commit record (orphans) and the
// objects a compaction replaced, until the sweeper deletes them, and so
// counts those rows twice.
//
// It must not decide what is committed: that is lake.CommitLog's answer,
// which it only prints.
package lakefiles
