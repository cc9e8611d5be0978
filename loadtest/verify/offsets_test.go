package verify

import (
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
)

// naive is the reference: a multiset of offsets.
type naive map[int64]int

func (n naive) spans(min int) []span {
	var offs []int64
	for o, c := range n {
		if c >= min {
			offs = append(offs, o)
		}
	}
	slices.Sort(offs)
	var out []span
	for _, o := range offs {
		out = appendSpan(out, span{o, o + 1})
	}
	return out
}

func TestOffsetBagCoverage(t *testing.T) {
	tests := []struct {
		name    string
		offsets []int64
	}{
		{name: "empty", offsets: nil},
		{name: "one", offsets: []int64{7}},
		{name: "contiguous", offsets: []int64{0, 1, 2, 3, 4}},
		{name: "gaps", offsets: []int64{0, 1, 3, 4, 9}},
		{name: "descending", offsets: []int64{5, 4, 3, 2, 1}},
		{name: "repeat inside a run", offsets: []int64{0, 1, 2, 1, 2, 3}},
		{name: "triple", offsets: []int64{4, 4, 4, 5}},
		{name: "overlapping runs", offsets: []int64{10, 11, 12, 13, 11, 12, 13, 14, 12}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bag := &offsetBag{}
			ref := naive{}
			for _, o := range tc.offsets {
				bag.add(o)
				ref[o]++
			}
			if got := bag.count(); got != int64(len(tc.offsets)) {
				t.Fatalf("count %d, want %d", got, len(tc.offsets))
			}
			support, dups, extra := bag.coverage()
			if want := ref.spans(1); !slices.Equal(support, want) {
				t.Errorf("support %v, want %v", support, want)
			}
			if want := ref.spans(2); !slices.Equal(dups, want) {
				t.Errorf("dups %v, want %v", dups, want)
			}
			var wantExtra int64
			for _, c := range ref {
				wantExtra += int64(c - 1)
			}
			if extra != wantExtra {
				t.Errorf("extra copies %d, want %d", extra, wantExtra)
			}
		})
	}
}

func TestSpanSetOperations(t *testing.T) {
	s := func(pairs ...int64) []span {
		var out []span
		for i := 0; i < len(pairs); i += 2 {
			out = append(out, span{pairs[i], pairs[i+1]})
		}
		return out
	}
	tests := []struct {
		name                  string
		a, b                  []span
		union, inter, aMinusB []span
	}{
		{name: "both empty"},
		{name: "a only", a: s(0, 5), union: s(0, 5), aMinusB: s(0, 5)},
		{name: "b only", b: s(0, 5), union: s(0, 5)},
		{name: "equal", a: s(0, 5), b: s(0, 5), union: s(0, 5), inter: s(0, 5)},
		{name: "adjacent", a: s(0, 5), b: s(5, 8), union: s(0, 8), aMinusB: s(0, 5)},
		{name: "hole punched", a: s(0, 10), b: s(3, 4), union: s(0, 10), inter: s(3, 4), aMinusB: s(0, 3, 4, 10)},
		{name: "interleaved", a: s(0, 2, 4, 6, 8, 10), b: s(1, 5, 9, 12), union: s(0, 6, 8, 12), inter: s(1, 2, 4, 5, 9, 10), aMinusB: s(0, 1, 5, 6, 8, 9)},
		{name: "b covers a", a: s(2, 3, 5, 7), b: s(0, 10), union: s(0, 10), inter: s(2, 3, 5, 7)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := union(tc.a, tc.b); !slices.Equal(got, tc.union) {
				t.Errorf("union %v, want %v", got, tc.union)
			}
			if got := intersect(tc.a, tc.b); !slices.Equal(got, tc.inter) {
				t.Errorf("intersect %v, want %v", got, tc.inter)
			}
			if got := subtract(tc.a, tc.b); !slices.Equal(got, tc.aMinusB) {
				t.Errorf("subtract %v, want %v", got, tc.aMinusB)
			}
		})
	}
}

// The randomized cross-check covers orders and overlaps the table misses.
func TestSpanSetOperationsRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		a, b := naive{}, naive{}
		var bagA offsetBag
		for range rng.IntN(60) {
			o := rng.Int64N(50)
			a[o]++
			bagA.add(o)
		}
		for range rng.IntN(60) {
			b[rng.Int64N(50)]++
		}
		sa, da, _ := bagA.coverage()
		if !slices.Equal(sa, a.spans(1)) || !slices.Equal(da, a.spans(2)) {
			t.Fatalf("round %d: coverage differs from the reference", round)
		}
		sb := b.spans(1)
		inBoth, inA := naive{}, naive{}
		for o := range a {
			if b[o] > 0 {
				inBoth[o] = 1
			} else {
				inA[o] = 1
			}
		}
		all := naive{}
		for o := range a {
			all[o] = 1
		}
		for o := range b {
			all[o] = 1
		}
		if got := intersect(sa, sb); !slices.Equal(got, inBoth.spans(1)) {
			t.Fatalf("round %d: intersect %v, want %v", round, got, inBoth.spans(1))
		}
		if got := subtract(sa, sb); !slices.Equal(got, inA.spans(1)) {
			t.Fatalf("round %d: subtract %v, want %v", round, got, inA.spans(1))
		}
		if got := union(sa, sb); !slices.Equal(got, all.spans(1)) {
			t.Fatalf("round %d: union %v, want %v", round, got, all.spans(1))
		}
	}
}

// Two and a half million positions over 8 partitions, committed in
// objects whose runs are broken by dead letters and late rows, must fit in
// a small fraction of the 200 MB the crash and load tests allow.
func TestPositionsMemoryBounded(t *testing.T) {
	const (
		partitions = 8
		perPart    = 320_000 // 2.56M in all
	)
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	exp := NewExpected()
	got := &Committed{raw: map[string]*offsetBag{}, dead: map[string]*offsetBag{}, maxExamples: 10}
	rng := rand.New(rand.NewPCG(3, 4))
	for p := range partitions {
		part := string(rune('0' + p))
		raw, dead := &offsetBag{}, &offsetBag{}
		got.raw[part], got.dead[part] = raw, dead
		for o := range int64(perPart) {
			// One record in 200 is malformed; one in 100 is late and lands
			// in another object, out of order.
			if rng.IntN(200) == 0 {
				exp.AddBad(part, o)
				dead.add(o)
				continue
			}
			exp.AddGood(part, o)
			if rng.IntN(100) == 0 {
				raw.runs = append(raw.runs, span{o, o + 1})
				continue
			}
			raw.add(o)
		}
	}
	rep := Compare(exp, got)
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(exp)
	runtime.KeepAlive(got)

	if !rep.OK() || rep.ExpectedGood+rep.ExpectedBad != partitions*perPart {
		t.Fatalf("report not OK or wrong totals:\n%s", rep)
	}
	held := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("%d positions held in %.1f MB of heap (peak total allocation %.1f MB)",
		partitions*perPart, float64(held)/1e6, float64(after.TotalAlloc-before.TotalAlloc)/1e6)
	if held > 50<<20 {
		t.Fatalf("positions hold %d bytes of heap, want well under 200 MB (< 50 MiB)", held)
	}
}
