package verify

import (
	"fmt"
	"slices"
	"strings"
)

// Position is one record of the source.
type Position struct {
	Partition string
	Offset    int64
}

func (p Position) String() string { return fmt.Sprintf("%s/%d", p.Partition, p.Offset) }

// Finding is a set of positions with one kind of problem.
type Finding struct {
	Positions int64      // distinct positions
	Examples  []Position // the lowest ones, by partition then offset
}

// Report compares what was produced with what readers can see.
type Report struct {
	Table                     string
	ExpectedGood, ExpectedBad int64 // distinct positions produced
	CommittedRows             int64 // raw rows, repetitions included
	CommittedDeadLetters      int64 // dead-letter lines, repetitions included
	CommittedPositions        int64 // distinct positions in raw and dead letters
	Records                   int   // commit records on the chains
	Objects                   int   // objects they name

	// Lost: produced, but in no committed object.
	Lost Finding
	// Duplicated: in committed objects more than once (raw and dead
	// letters together); ExtraCopies counts the copies beyond the first.
	Duplicated  Finding
	ExtraCopies int64
	// Unexpected: in committed objects, but never produced.
	Unexpected Finding
	// Misfiled: a good record in the dead letters or a bad one in raw.
	Misfiled Finding

	// Issues: objects that disagree with their commit records (examples
	// and counts by kind).
	Issues      []Issue
	IssueCounts map[string]int64
	// Anomalies: commit-area objects off the chains (ignored by readers;
	// informational, not a failure).
	Anomalies int
	// DuplicateEventIDs: rows repeating another row's event id
	// (informational: it points at the producer, not at ingest).
	DuplicateEventIDs int64
	// UnknownEventIDs: rows whose event id is null or, when the producers'
	// ids are known (Options.EventIndex), one no producer made.
	UnknownEventIDs int64
}

// OK reports whether every produced record is committed exactly once, in
// the right area, nothing else is, and every object matches its record.
func (r Report) OK() bool {
	return r.Lost.Positions == 0 && r.Duplicated.Positions == 0 && r.Unexpected.Positions == 0 &&
		r.Misfiled.Positions == 0 && r.issueTotal() == 0
}

func (r Report) issueTotal() int64 {
	var n int64
	for _, c := range r.IssueCounts {
		n += c
	}
	return n
}

// String is a human-readable summary naming every difference with
// examples.
func (r Report) String() string {
	var b strings.Builder
	verdict := "OK"
	if !r.OK() {
		verdict = "FAILED"
	}
	fmt.Fprintf(&b, "verify %s: %s\n", r.Table, verdict)
	fmt.Fprintf(&b, "  produced: %d good, %d malformed\n", r.ExpectedGood, r.ExpectedBad)
	fmt.Fprintf(&b, "  committed: %d raw rows, %d dead letters, %d distinct positions, in %d objects of %d commit records\n",
		r.CommittedRows, r.CommittedDeadLetters, r.CommittedPositions, r.Objects, r.Records)
	finding := func(name string, f Finding, extra string) {
		fmt.Fprintf(&b, "  %-11s %d%s", name+":", f.Positions, extra)
		if len(f.Examples) > 0 {
			ex := make([]string, len(f.Examples))
			for i, p := range f.Examples {
				ex[i] = p.String()
			}
			fmt.Fprintf(&b, "  e.g. %s", strings.Join(ex, " "))
		}
		b.WriteByte('\n')
	}
	finding("lost", r.Lost, "")
	dupExtra := ""
	if r.ExtraCopies > 0 {
		dupExtra = fmt.Sprintf(" (%d extra copies)", r.ExtraCopies)
	}
	finding("duplicated", r.Duplicated, dupExtra)
	finding("unexpected", r.Unexpected, "")
	finding("misfiled", r.Misfiled, "")
	if n := r.issueTotal(); n > 0 {
		kinds := make([]string, 0, len(r.IssueCounts))
		for k, c := range r.IssueCounts {
			kinds = append(kinds, fmt.Sprintf("%s %d", k, c))
		}
		slices.Sort(kinds)
		fmt.Fprintf(&b, "  object issues: %d (%s)\n", n, strings.Join(kinds, ", "))
		for _, is := range r.Issues {
			fmt.Fprintf(&b, "    %s\n", is)
		}
	}
	if r.Anomalies > 0 {
		fmt.Fprintf(&b, "  commit records off the chains (ignored): %d\n", r.Anomalies)
	}
	if r.DuplicateEventIDs > 0 {
		fmt.Fprintf(&b, "  rows repeating an event id: %d\n", r.DuplicateEventIDs)
	}
	if r.UnknownEventIDs > 0 {
		fmt.Fprintf(&b, "  rows with an event id no producer made: %d\n", r.UnknownEventIDs)
	}
	return strings.TrimRight(b.String(), "\n")
}

// Compare checks got against exp, partition by partition.
func Compare(exp *Expected, got *Committed) Report {
	maxEx := got.maxExamples
	if maxEx <= 0 {
		maxEx = 10
	}
	r := Report{
		Table:                got.Table,
		CommittedRows:        got.Rows,
		CommittedDeadLetters: got.DeadLetters,
		Records:              got.Records,
		Objects:              got.RawObjects + got.DeadLetterObjects,
		Issues:               slices.Clone(got.Issues),
		IssueCounts:          map[string]int64{},
		Anomalies:            len(got.Anomalies),
		DuplicateEventIDs:    got.DuplicateEventIDs,
		UnknownEventIDs:      got.UnknownEventIDs,
	}
	for k, v := range got.IssueCounts {
		if v > 0 {
			r.IssueCounts[k] = v
		}
	}
	good, bad := exp.sets()
	parts := map[string]bool{}
	for _, m := range []map[string][]span{good, bad} {
		for p := range m {
			parts[p] = true
		}
	}
	for _, p := range got.Partitions() {
		parts[p] = true
	}
	order := make([]string, 0, len(parts))
	for p := range parts {
		order = append(order, p)
	}
	sortPartitions(order)

	for _, p := range order {
		eg, eb := good[p], bad[p]
		r.ExpectedGood += total(eg)
		r.ExpectedBad += total(eb)
		var rawSupport, deadSupport []span
		all := &offsetBag{}
		if bag := got.raw[p]; bag != nil {
			rawSupport, _, _ = (&offsetBag{runs: slices.Clone(bag.runs)}).coverage()
			all.addBag(bag)
		}
		if bag := got.dead[p]; bag != nil {
			deadSupport, _, _ = (&offsetBag{runs: slices.Clone(bag.runs)}).coverage()
			all.addBag(bag)
		}
		support, dups, extra := all.coverage()
		expected := union(eg, eb)
		r.CommittedPositions += total(support)
		r.ExtraCopies += extra
		addFinding(&r.Lost, p, subtract(expected, support), maxEx)
		addFinding(&r.Duplicated, p, dups, maxEx)
		addFinding(&r.Unexpected, p, subtract(support, expected), maxEx)
		addFinding(&r.Misfiled, p, union(intersect(eg, deadSupport), intersect(eb, rawSupport)), maxEx)
	}
	return r
}

func addFinding(f *Finding, partition string, spans []span, maxEx int) {
	f.Positions += total(spans)
	if room := maxEx - len(f.Examples); room > 0 {
		for _, o := range firstOffsets(spans, room) {
			f.Examples = append(f.Examples, Position{partition, o})
		}
	}
}
