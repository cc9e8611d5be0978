// Package app is what the sluice binary runs: it opens the stores a
// config names, builds each command's components and runs them as one run
// group per command. cmd/sluice holds only the command tree and its flags
// and calls one function here per command. The components themselves
// (sources, writer, aggregator, ops, web tier) live in their own packages
// and know nothing of this one.
//
// It creates the series several components of one process share once, on the
// process's registry (metrics.go), and gives them to each component.
package app
