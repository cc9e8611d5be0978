package gen

import (
	"math"
	"math/rand/v2"
)

// zipfHeadRanks is how many of the most popular ranks the alias table
// holds: 32 KiB, and with the default exponent and users 91% of the draws.
// A table of 65,536 ranks (512 KiB, 97%) was as fast as math/rand in the
// load test: its random reads missed the caches the benchmark keeps warm.
const zipfHeadRanks = 1 << 12

// zipf draws ranks in [0, n) with P(k) proportional to (1+k)^-s, the
// distribution of rand.NewZipf(r, s, 1, n-1), at a fraction of its cost:
// math/rand's rejection sampler calls Exp and Log for every draw, which
// was 2% of a flat-out load test. The most popular ranks come from an
// alias table (Vose), two table reads per draw; the rest, drawn with the
// head's complement of the probability, from a rand.Zipf offset to start
// where the table ends. Both parts are exact, so the mixture is the same
// distribution, only not the same draws for a seed.
type zipf struct {
	r *rand.Rand
	// headCut: a uniform uint64 below it draws from the head.
	headCut uint64
	// accept[i] (scaled to 2^32) is how often slot i keeps its own rank;
	// otherwise it gives alias[i].
	accept []uint32
	alias  []uint32
	tail   *rand.Zipf // ranks from len(accept) on; nil when the head is all
}

func newZipf(r *rand.Rand, s float64, n uint64) *zipf {
	head := min(n, zipfHeadRanks)
	weights := make([]float64, head)
	var headSum float64
	for k := range weights {
		weights[k] = math.Pow(float64(k+1), -s)
		headSum += weights[k]
	}
	z := &zipf{r: r, headCut: math.MaxUint64}
	if head < n {
		tailSum := powerSum(s, float64(head+1), float64(n))
		share := headSum / (headSum + tailSum)
		z.headCut = uint64(share * (1 << 64)) // share < 1: no overflow
		z.tail = rand.NewZipf(r, s, float64(head+1), n-head-1)
	}
	z.accept, z.alias = aliasTable(weights, headSum)
	return z
}

// Uint64 draws a rank.
func (z *zipf) Uint64() uint64 {
	if z.tail != nil && z.r.Uint64() >= z.headCut {
		return uint64(len(z.accept)) + z.tail.Uint64()
	}
	x := z.r.Uint64()
	slot := (x >> 32) * uint64(len(z.accept)) >> 32
	if uint32(x) < z.accept[slot] {
		return slot
	}
	return uint64(z.alias[slot])
}

// aliasTable builds Vose's alias table for weights summing to sum.
func aliasTable(weights []float64, sum float64) (accept, alias []uint32) {
	n := len(weights)
	accept, alias = make([]uint32, n), make([]uint32, n)
	scaled := make([]float64, n)
	var small, large []int
	for i, w := range weights {
		scaled[i] = w * float64(n) / sum
		alias[i] = uint32(i)
		if scaled[i] < 1 {
			small = append(small, i)
		} else {
			large = append(large, i)
		}
	}
	for len(small) > 0 && len(large) > 0 {
		s, l := small[len(small)-1], large[len(large)-1]
		small = small[:len(small)-1]
		accept[s], alias[s] = toThreshold(scaled[s]), uint32(l)
		scaled[l] -= 1 - scaled[s]
		if scaled[l] < 1 {
			large = large[:len(large)-1]
			small = append(small, l)
		}
	}
	// What is left is 1 up to rounding: it keeps its own rank always.
	for _, i := range append(small, large...) {
		accept[i], alias[i] = math.MaxUint32, uint32(i)
	}
	return accept, alias
}

// toThreshold scales p in [0, 1] to a uint32 compared against: below it
// keeps the slot.
func toThreshold(p float64) uint32 {
	return uint32(min(math.Round(p*(1<<32)), math.MaxUint32))
}

// powerSum is the sum of k^-s for k from a to b (integers, a <= b), by
// Euler–Maclaurin: the integral, the end-point halves and two derivative
// corrections. From the table's end (a = 4097) on, the next term is below
// 1e-21 of the sum for exponents up to 3.5.
func powerSum(s, a, b float64) float64 {
	f := func(x float64) float64 { return math.Pow(x, -s) }
	f1 := func(x float64) float64 { return -s * math.Pow(x, -s-1) }
	f3 := func(x float64) float64 { return -s * (s + 1) * (s + 2) * math.Pow(x, -s-3) }
	integral := (math.Pow(a, 1-s) - math.Pow(b, 1-s)) / (s - 1)
	return integral + (f(a)+f(b))/2 + (f1(b)-f1(a))/12 - (f3(b)-f3(a))/720
}
