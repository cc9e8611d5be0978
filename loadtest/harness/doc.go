// Package harness runs a load test of a Sluice pipeline end to end: it
// produces generated events (and malformed records of every dead-letter
// kind) to Kafka at a target rate, watches the pipeline while it works
// (rates, lag, CPU, memory, when data becomes visible), then proves from the
// object stores that every acknowledged record is committed exactly once in
// the right area and that every closed window's summary is right, and
// reports what it measured as a table, JSON and an HTML page.
//
// Ground truth for summaries. The generators keep their own truth
// (gen.Truth): per rollup window and (event_type, country), the exact
// count, sum, min and max of amount, every latency and the distinct users
// of the acknowledged good events, computed from the generated values with
// none of the engine's code. The verifier first proves that the committed
// raw data holds exactly the acknowledged positions, once each; then it
// reads every summary Parquet object as a user would (loadtest/oracle) and
// compares every closed window's every measure with that truth: count,
// sum, min, max and avg exactly, quantiles within the DDSketch's relative
// accuracy, distinct users within three standard errors of the
// HyperLogLog. The truth costs about 8 bytes of memory per event.
//
// It owns the run of a load test and its report. Production packages must
// not import it.
package harness
