package aggregate

import (
	"context"
	"slices"
	"time"

	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/schema"
)

// A summarised window that gets new links (late data within the horizon)
// is brought up to date by folding only the rows those links add and
// merging them into the window's rows, instead of reading again every
// object that overlaps it. Every measure state merges exactly (counts,
// exact sums, min and max, HyperLogLog registers, DDSketch bins), so the
// result is the summary a recomputation gives; a window is recomputed
// instead whenever that could not be shown (see addedLinks.add). With
// steady late data, recomputation read each window's objects again at
// every run: a one-minute load test read three times the rows it ingested.

// addedLinks collects the windows of one unit to bring up to date by
// merging, grouped by the set of links they gain: the objects of a group
// hold, within its windows, only rows the windows do not have yet.
type addedLinks struct {
	groups []*addedGroup
	byHash map[string]*addedGroup
}

type addedGroup struct {
	starts []int64
	objs   []lake.LiveObject
	keys   map[string]bool
}

// add takes the window of d, whose summary was computed from prev, when
// merging in the rows of its new links gives what recomputing it would:
//   - prev names the links it was computed from, and no others' rows are
//     in it (LinksExact: summaries written before the chains and the live
//     objects were read as one view may not), and they are all still
//     among d's;
//   - none of its records were counted as too late (those are left out of
//     the summary, which merging the link that held them would undo);
//   - each new link's objects overlapping the window are still live, as
//     its commit record names them: once compacted, its rows are in
//     objects that hold rows of other links too, some of them already in
//     the summary.
//
// It reports false, and takes nothing, otherwise.
func (a *addedLinks) add(prev WindowState, d Decision, w time.Duration, raw rawInputs) bool {
	if !prev.LinksExact || len(prev.Links) == 0 || InputsHash(prev.Links) != prev.Inputs || prev.TooLate != 0 || len(prev.Late) != 0 {
		return false
	}
	if len(difference(prev.Links, d.Inputs)) != 0 {
		return false
	}
	added := difference(d.Inputs, prev.Links)
	if len(added) == 0 {
		return false
	}
	from, to := d.Start, d.Start+w.Microseconds()
	var objs []lake.LiveObject
	for _, l := range added {
		for _, o := range raw.byLink[l] {
			if o.MaxMicros < from || o.MinMicros >= to {
				continue
			}
			lo, ok := raw.liveByKey[o.Key]
			if !ok {
				return false
			}
			objs = append(objs, lo)
		}
	}
	h := InputsHash(added)
	if a.byHash == nil {
		a.byHash = map[string]*addedGroup{}
	}
	g := a.byHash[h]
	if g == nil {
		g = &addedGroup{keys: map[string]bool{}}
		a.byHash[h] = g
		a.groups = append(a.groups, g)
	}
	g.starts = append(g.starts, d.Start)
	for _, o := range objs {
		if !g.keys[o.Key] {
			g.keys[o.Key] = true
			g.objs = append(g.objs, o)
		}
	}
	return true
}

// windows lists the starts of every window taken.
func (a *addedLinks) windows() []int64 {
	var out []int64
	for _, g := range a.groups {
		out = append(out, g.starts...)
	}
	return out
}

// mergeAdded folds each group's objects within its windows and merges the
// result into those windows' existing rows.
func (s *Service) mergeAdded(ctx context.Context, t *schema.Table, w time.Duration, existing *Summary, a *addedLinks, st *RunStats,
	workers int) (*Summary, error) {
	parts := []*Summary{existing.SelectWindows(a.windows())}
	for _, g := range a.groups {
		slices.Sort(g.starts)
		from, to := time.UnixMicro(g.starts[0]), time.UnixMicro(g.starts[len(g.starts)-1]).Add(w)
		sum, err := s.computeFromRaw(ctx, t, w, from, to, g.objs, st, workers)
		if err != nil {
			return nil, err
		}
		// Between the group's first and last window there may be others,
		// which the group's links are not new to.
		parts = append(parts, sum.SelectWindows(g.starts))
	}
	// The parts are this unit's own: the existing rows of these windows
	// are not used again (the rest of the unit keeps the others).
	return MergeOwned(t, w, parts...)
}
