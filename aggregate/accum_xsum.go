package aggregate

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
)

// xsum is the exact sum of float64 values: a two's-complement fixed-point
// integer whose unit is 2^-1074, the smallest subnormal, wide enough for any
// finite float64 plus 2^77 of carry headroom (a Kulisch accumulator).
//
// Why exact: float addition is not associative, so a plain or even
// compensated sum depends on the order rows arrive in, which depends on how
// objects were split, compacted and spread over workers. An exact sum
// rounded once is the same whatever the order, so reruns and two
// aggregators write identical bytes and a summary equals a recomputation
// bit for bit. Adding costs a shift and a two-word add with a carry that
// rarely travels.
type xsum struct {
	w [xsumWords]uint64
	// Non-finite inputs cannot live in the fixed-point word; they are
	// counted aside and dominate the result as IEEE addition would.
	posInf, negInf, nan bool
}

const (
	xsumWords = 34 // 2176 bits: 2098 for the float64 range, the rest headroom
	fracBits  = 52
)

func (x *xsum) add(v float64) {
	b := math.Float64bits(v)
	exp := int(b>>fracBits) & 0x7ff
	m := b & (1<<fracBits - 1)
	if exp == 0x7ff {
		switch {
		case m != 0:
			x.nan = true
		case b>>63 != 0:
			x.negInf = true
		default:
			x.posInf = true
		}
		return
	}
	shift := 0
	if exp != 0 {
		m |= 1 << fracBits
		shift = exp - 1
	}
	if m == 0 {
		return
	}
	i, s := shift/64, uint(shift%64)
	lo := m << s
	var hi uint64
	if s > 0 {
		hi = m >> (64 - s)
	}
	if b>>63 == 0 {
		var c uint64
		x.w[i], c = bits.Add64(x.w[i], lo, 0)
		x.w[i+1], c = bits.Add64(x.w[i+1], hi, c)
		for j := i + 2; c != 0 && j < xsumWords; j++ {
			x.w[j], c = bits.Add64(x.w[j], 0, c)
		}
	} else {
		var c uint64
		x.w[i], c = bits.Sub64(x.w[i], lo, 0)
		x.w[i+1], c = bits.Sub64(x.w[i+1], hi, c)
		for j := i + 2; c != 0 && j < xsumWords; j++ {
			x.w[j], c = bits.Sub64(x.w[j], 0, c)
		}
	}
}

func (x *xsum) merge(o *xsum) {
	var c uint64
	for j := range x.w {
		x.w[j], c = bits.Add64(x.w[j], o.w[j], c)
	}
	x.posInf = x.posInf || o.posInf
	x.negInf = x.negInf || o.negInf
	x.nan = x.nan || o.nan
}

func (x *xsum) special() (float64, bool) {
	switch {
	case x.nan || (x.posInf && x.negInf):
		return math.NaN(), true
	case x.posInf:
		return math.Inf(1), true
	case x.negInf:
		return math.Inf(-1), true
	}
	return 0, false
}

// float64 is the exact sum correctly rounded (to nearest, ties to even).
// A nil xsum is zero.
func (x *xsum) float64() float64 {
	if x == nil {
		return 0
	}
	if f, ok := x.special(); ok {
		return f
	}
	mag := x.w
	neg := mag[xsumWords-1]>>63 != 0
	if neg {
		var c uint64 = 1
		for j := range mag {
			mag[j], c = bits.Add64(^mag[j], 0, c)
		}
	}
	top := -1
	for j := xsumWords - 1; j >= 0; j-- {
		if mag[j] != 0 {
			top = j*64 + 63 - bits.LeadingZeros64(mag[j])
			break
		}
	}
	var f float64
	switch {
	case top < 0:
		return 0
	case top <= 52:
		// Below 2^53 units the value is an exact subnormal or the smallest
		// normal binade: no rounding.
		f = math.Ldexp(float64(mag[0]), -1074)
	default:
		t64 := bitsAt(&mag, top)
		sticky := stickyBelow(&mag, top-63)
		mant := t64 >> 11
		rem := t64 & 0x7ff
		if rem&0x400 != 0 && (rem&0x3ff != 0 || sticky || mant&1 != 0) {
			mant++
		}
		f = math.Ldexp(float64(mant), top-52-1074) // may overflow to Inf, as IEEE would
	}
	if neg {
		f = -f
	}
	return f
}

// bitsAt returns the 64 bits whose highest is bit hi of w.
func bitsAt(w *[xsumWords]uint64, hi int) uint64 {
	lo := hi - 63
	i, s := lo/64, uint(lo%64)
	if lo < 0 { // cannot happen for hi > 52 ... but keep it total
		return w[0] << uint(-lo)
	}
	v := w[i] >> s
	if s > 0 && i+1 < xsumWords {
		v |= w[i+1] << (64 - s)
	}
	return v
}

// stickyBelow reports whether any bit below bit n of w is set.
func stickyBelow(w *[xsumWords]uint64, n int) bool {
	if n <= 0 {
		return false
	}
	i, s := n/64, uint(n%64)
	for j := 0; j < i; j++ {
		if w[j] != 0 {
			return true
		}
	}
	return s > 0 && w[i]&(1<<s-1) != 0
}

// parts returns the exact sum as non-overlapping float64s, largest first,
// whose exact sum is the accumulator: the correctly rounded value, then
// what rounding lost, and so on. Usually one or two parts; none for zero
// (and for a nil xsum).
func (x *xsum) parts() []float64 {
	if x == nil {
		return nil
	}
	if f, ok := x.special(); ok {
		return []float64{f}
	}
	r := *x
	var out []float64
	for range 64 { // each part removes at least 53 bits: ~40 at most
		f := r.float64()
		if f == 0 {
			break
		}
		if math.IsInf(f, 0) {
			// Beyond float64 range; keep what we can say.
			return []float64{f}
		}
		out = append(out, f)
		r.add(-f)
	}
	return out
}

// appendParts encodes parts as little-endian float64s: the __xsum column.
func appendParts(dst []byte, parts []float64) []byte {
	for _, p := range parts {
		dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(p))
	}
	return dst
}

var errBadXsum = errors.New("exact sum: length is not a multiple of 8")

// addSumParts adds an encoded __xsum value to the state's exact sum,
// allocating it if this is its first part.
func (s *MeasureState) addSumParts(b []byte) error {
	if len(b)%8 != 0 {
		return fmt.Errorf("%w (%d bytes)", errBadXsum, len(b))
	}
	for i := 0; i < len(b); i += 8 {
		s.addFloat(math.Float64frombits(binary.LittleEndian.Uint64(b[i:])))
	}
	return nil
}

// addFloat adds v to the state's exact sum. The sum is allocated at its
// first value other than ±0 (which add nothing to it): most groups of a
// typical rollup sum a field that is zero in most rows (an amount only
// purchases have), and allocating, zeroing, merging and encoding 280 bytes
// for each of them was a tenth of an aggregation pass.
func (s *MeasureState) addFloat(v float64) {
	if v == 0 {
		return
	}
	if s.fsum == nil {
		s.fsum = new(xsum)
	}
	s.fsum.add(v)
}

// mergeSum adds o's exact sum to s's.
func (s *MeasureState) mergeSum(o *MeasureState) {
	if o.fsum == nil {
		return
	}
	if s.fsum == nil {
		s.fsum = new(xsum)
	}
	s.fsum.merge(o.fsum)
}
