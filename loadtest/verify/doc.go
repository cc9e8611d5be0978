// Package verify proves what readers of a Sluice table can see: it reads
// only the objects that commit records on the chains name (as every reader
// must), collects the source positions (partition, offset) they hold, checks
// each object against its commit record, and compares the positions with
// what a producer was acknowledged: none lost, none twice, none invented,
// none in the wrong area.
//
// Memory is bounded by the number of runs of consecutive offsets (a few
// per object), not by the number of records, plus the objects being read
// at once; see offsetBag.
//
// It must not know the writer's code: it reads only what any reader may,
// through the lake's commit records.
package verify
