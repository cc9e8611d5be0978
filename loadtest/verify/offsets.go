package verify

import (
	"cmp"
	"slices"
)

// span is the half-open offset range [lo, hi).
type span struct{ lo, hi int64 }

func (s span) len() int64 { return s.hi - s.lo }

// offsetBag collects the offsets of one partition, with repetitions, as
// runs of consecutive offsets in arrival order. Records of a partition
// arrive mostly in offset order (a Parquet object holds a contiguous range
// minus its dead letters), so a bag of millions of offsets is a few
// thousand runs; even the worst case, no two offsets adjacent, costs 16
// bytes an offset.
type offsetBag struct {
	runs []span
}

func (b *offsetBag) add(off int64) {
	if n := len(b.runs); n > 0 && b.runs[n-1].hi == off {
		b.runs[n-1].hi++
		return
	}
	b.runs = append(b.runs, span{off, off + 1})
}

func (b *offsetBag) addBag(o *offsetBag) { b.runs = append(b.runs, o.runs...) }

// count is how many offsets were added, repetitions included.
func (b *offsetBag) count() int64 {
	var n int64
	for _, r := range b.runs {
		n += r.len()
	}
	return n
}

// coverage sweeps the runs and returns the distinct offsets (support) and
// the offsets present more than once (dups), both as sorted, disjoint,
// non-adjacent spans, plus how many copies beyond the first there are.
// The runs are sorted in place.
func (b *offsetBag) coverage() (support, dups []span, extra int64) {
	if len(b.runs) == 0 {
		return nil, nil, 0
	}
	type edge struct {
		at    int64
		delta int
	}
	edges := make([]edge, 0, 2*len(b.runs))
	for _, r := range b.runs {
		edges = append(edges, edge{r.lo, +1}, edge{r.hi, -1})
	}
	slices.SortFunc(edges, func(a, b edge) int { return cmp.Compare(a.at, b.at) })
	depth := 0
	for i := 0; i < len(edges); {
		at := edges[i].at
		for i < len(edges) && edges[i].at == at {
			depth += edges[i].delta
			i++
		}
		if i == len(edges) {
			break
		}
		next := edges[i].at
		if depth >= 1 {
			support = appendSpan(support, span{at, next})
		}
		if depth >= 2 {
			dups = appendSpan(dups, span{at, next})
			extra += int64(depth-1) * (next - at)
		}
	}
	return support, dups, extra
}

// appendSpan appends s to sorted disjoint spans, merging it with the last
// one when they touch.
func appendSpan(spans []span, s span) []span {
	if s.hi <= s.lo {
		return spans
	}
	if n := len(spans); n > 0 && spans[n-1].hi >= s.lo {
		spans[n-1].hi = max(spans[n-1].hi, s.hi)
		return spans
	}
	return append(spans, s)
}

// normalize sorts and merges arbitrary spans into sorted, disjoint,
// non-adjacent ones.
func normalize(spans []span) []span {
	slices.SortFunc(spans, func(a, b span) int { return cmp.Compare(a.lo, b.lo) })
	var out []span
	for _, s := range spans {
		out = appendSpan(out, s)
	}
	return out
}

// The set operations below take and return normalized spans.

func union(a, b []span) []span {
	out := make([]span, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		if j == len(b) || (i < len(a) && a[i].lo <= b[j].lo) {
			out = appendSpan(out, a[i])
			i++
		} else {
			out = appendSpan(out, b[j])
			j++
		}
	}
	return out
}

func intersect(a, b []span) []span {
	var out []span
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		lo, hi := max(a[i].lo, b[j].lo), min(a[i].hi, b[j].hi)
		if lo < hi {
			out = appendSpan(out, span{lo, hi})
		}
		if a[i].hi < b[j].hi {
			i++
		} else {
			j++
		}
	}
	return out
}

// subtract returns a minus b.
func subtract(a, b []span) []span {
	var out []span
	j := 0
	for _, s := range a {
		lo := s.lo
		for j < len(b) && b[j].hi <= lo {
			j++
		}
		for k := j; k < len(b) && b[k].lo < s.hi; k++ {
			if b[k].lo > lo {
				out = appendSpan(out, span{lo, b[k].lo})
			}
			lo = max(lo, b[k].hi)
		}
		if lo < s.hi {
			out = appendSpan(out, span{lo, s.hi})
		}
	}
	return out
}

func total(spans []span) int64 {
	var n int64
	for _, s := range spans {
		n += s.len()
	}
	return n
}

// firstOffsets returns up to n offsets of spans, lowest first.
func firstOffsets(spans []span, n int) []int64 {
	var out []int64
	for _, s := range spans {
		for o := s.lo; o < s.hi && len(out) < n; o++ {
			out = append(out, o)
		}
		if len(out) >= n {
			break
		}
	}
	return out
}
