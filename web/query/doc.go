// Package query is the query API over the summaries: a request names a
// table, a window size, a time range and zone, dimensions to group by,
// filters and measures; the answer is built by merging the stored windows'
// mergeable states (exact sums and counts, sketches for quantiles and
// distinct counts) into the requested buckets, never finer than stored.
//
// Local days and hours are merged from stored windows whose boundaries
// fall on the zone's boundaries: a Berlin day is the 23, 24 or 25 stored
// hours between two local midnights.
//
// It owns requests, answers and their cache. It reads summaries only, and
// must not know ingestion or the sources.
package query
