// Package aggtest holds what the aggregator's tests and benchmarks share,
// kept out of the aggregate package: the exact recomputation a summary is
// checked against (ExactRecompute, Check), and the driver of the in-memory
// fold's benchmark (BenchAggregate), which `sluice bench aggregate
// --fold-only` runs through loadtest/bench.
//
// The recomputation shares no code with the engine: it reads rows through
// parquet-go's generic row reader and keeps every input value, where the
// engine decodes pages and folds them into sketches; it relies only on the
// table's schema and the summary's exported state.
package aggtest
