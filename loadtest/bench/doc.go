// Package bench measures the real binaries end to end: a broker process, a
// producer, and an ingester process whose CPU time and peak RSS the kernel
// reports when it exits.
//
// It owns the benchmark drivers and their figures. Production packages must
// not import it.
package bench
