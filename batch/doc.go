// Package batch runs the batch pattern's map/reduce once, from files
// straight to summaries: each split of each file is mapped to a partial
// summary written as an object, and the partials are merged into the
// summary store in the aggregator's layout.
//
// It owns the one-shot map and reduce over files. It must not know the
// streaming pipeline's commit chains: its partials are its own objects, and
// it reuses the aggregator's engine and the inbox's file splitting rather
// than copies of them.
package batch
