// Package lake is Sluice's table format over an object store: every key
// layout, the commit records and their chains, compaction records, and the
// reader of committed data. A record is written last, conditionally, so an
// object no record names does not exist for readers.
//
// It builds the keys of every object the other packages keep in a store
// (layout.go), raw data and summaries as well as leases, ledgers and the
// action log, but must not know those packages, tables' schemas, the
// sources or the aggregator: it sees tables by name and objects by key,
// and reaches storage only through objstore.
package lake
