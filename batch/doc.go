// Package batch runs the batch pattern's map/reduce once, from files
// straight to summaries: each split of each file is mapped to a partial
// summary written as an object, and the partials are merged into the
// summary store in the aggregator's layout.
package batch
