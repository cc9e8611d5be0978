// Package oracle checks summary files against the generators' own truth
// (gen.Truth). It reads the summary Parquet objects the way a user would,
// with parquet-go's row reader and the documented column names, and shares
// no code with the engine that wrote them: no summary reader, no window or
// grouping helper, no sketch code of the aggregate package.
//
// What it asserts, per window and group: __rows and the count exactly; the
// sum, min, max and avg of amount exactly (the sum as the exact sum rounded
// once, avg as that sum divided by the count); each latency quantile within
// the DDSketch's relative accuracy of the exact rank-based quantile; the
// distinct users within three standard errors (1.04/sqrt(2^precision)) of
// the exact count.
package oracle
