package gen

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

// TestZipfMatchesTheDistribution draws ranks and compares the counts in
// log-spaced buckets with the probabilities summed term by term (not with
// the sampler's own sums): a chi-square well past the 99.9th percentile,
// or a head/tail share off by more than 5 sigma, fails. The users span
// the table's end, so both parts and the cut between them are checked.
func TestZipfMatchesTheDistribution(t *testing.T) {
	for _, tc := range []struct {
		s float64
		n uint64
	}{
		{1.2, 300_000},           // head and tail
		{1.05, 1_000_000},        // flat: a large tail share
		{2.5, 200_000},           // steep: almost all in the head
		{1.2, 50_000},            // head only
		{1.2, 1},                 // one user
		{1.2, zipfHeadRanks + 1}, // a tail of one rank
	} {
		const draws = 3_000_000
		z := newZipf(rand.New(rand.NewPCG(1, uint64(tc.n))), tc.s, tc.n)
		var edges []uint64 // bucket b holds ranks [edges[b], edges[b+1])
		for e := uint64(0); e < tc.n; e = max(e+1, e*5/4) {
			edges = append(edges, e)
		}
		edges = append(edges, tc.n)
		want := make([]float64, len(edges)-1)
		var total float64
		for b := range want {
			for k := edges[b]; k < edges[b+1]; k++ {
				want[b] += math.Pow(float64(k+1), -tc.s)
			}
			total += want[b]
		}
		got := make([]float64, len(want))
		var inTail float64
		for range draws {
			k := z.Uint64()
			if k >= tc.n {
				t.Fatalf("s=%v n=%d: rank %d out of range", tc.s, tc.n, k)
			}
			if k >= zipfHeadRanks {
				inTail++
			}
			b := searchEdge(edges, k)
			got[b]++
		}
		var chi2 float64
		dof := -1
		var tailWant float64
		for k := tc.n - 1; k >= zipfHeadRanks && k < tc.n; k-- {
			tailWant += math.Pow(float64(k+1), -tc.s) / total
		}
		for b := range want {
			exp := want[b] / total * draws
			if exp < 5 { // too few expected for chi-square: checked by the tail share
				continue
			}
			chi2 += (got[b] - exp) * (got[b] - exp) / exp
			dof++
		}
		// The 99.9th percentile of chi-square is below dof + 4.5 sqrt(dof) + 10
		// for these degrees of freedom.
		if limit := float64(dof) + 4.5*math.Sqrt(float64(max(dof, 1))) + 10; chi2 > limit {
			t.Errorf("s=%v n=%d: chi-square %.1f over %d degrees of freedom (limit %.1f)", tc.s, tc.n, chi2, dof, limit)
		}
		sigma := math.Sqrt(draws * tailWant * (1 - tailWant))
		if math.Abs(inTail-tailWant*draws) > 5*sigma+1 {
			t.Errorf("s=%v n=%d: %.0f draws past the table, want %.0f ± %.0f", tc.s, tc.n, inTail, tailWant*draws, 5*sigma)
		}
	}
}

// searchEdge is the bucket of rank k: the last edge at or below it.
func searchEdge(edges []uint64, k uint64) int {
	return sort.Search(len(edges), func(i int) bool { return edges[i] > k }) - 1
}

// TestPowerSumMatchesTheTermwiseSum checks the closed form the head's
// share comes from against adding up the terms.
func TestPowerSumMatchesTheTermwiseSum(t *testing.T) {
	for _, s := range []float64{1.01, 1.2, 2, 3.5} {
		for _, r := range [][2]float64{{zipfHeadRanks + 1, zipfHeadRanks + 1}, {zipfHeadRanks + 1, 2_000_000}, {1000, 5000}} {
			var direct float64
			for k := r[1]; k >= r[0]; k-- { // smallest terms first
				direct += math.Pow(k, -s)
			}
			if got := powerSum(s, r[0], r[1]); math.Abs(got-direct) > 1e-12*direct {
				t.Errorf("s=%v [%v, %v]: %.17g, termwise %.17g", s, r[0], r[1], got, direct)
			}
		}
	}
}

func BenchmarkZipf(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	b.Run("alias+tail", func(b *testing.B) {
		z := newZipf(r, DefaultZipfS, DefaultUsers)
		for range b.N {
			_ = z.Uint64()
		}
	})
	b.Run("math/rand", func(b *testing.B) {
		z := rand.NewZipf(r, DefaultZipfS, 1, DefaultUsers-1)
		for range b.N {
			_ = z.Uint64()
		}
	})
}
