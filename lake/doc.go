// Package lake is Sluice's table format over an object store: every key
// layout, the commit records and their chains, compaction records, and the
// reader of committed data. A record is written last, conditionally, so an
// object no record names does not exist for readers.
//
// It must not know tables' schemas, the sources or the aggregator: it sees
// tables by name and objects by key, and reaches storage only through
// objstore.
package lake
