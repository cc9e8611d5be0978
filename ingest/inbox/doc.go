// Package inbox is the batch source: files dropped under an inbox prefix of
// an object store are found by listing (and by bucket event notifications),
// claimed in a ledger kept in the lake, cut into splits, and each split is
// mapped through the ingest pipeline on a chain of its own, so the commit
// protocol's exactly-once holds per split and a restarted process resumes a
// split where its chain ends.
//
// It owns the inbox's listing, claims, ledger and splits. It must not know
// the other sources, nor how splits are encoded and committed: that is the
// ingest writer's.
package inbox
