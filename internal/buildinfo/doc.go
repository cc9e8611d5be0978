// Package buildinfo describes the running binary: its version and the
// source revision it was built from. `sluice version` and the created_by of
// every Parquet object Sluice writes give the same answer.
//
// It must not know anything else of Sluice: every package may import it.
package buildinfo
