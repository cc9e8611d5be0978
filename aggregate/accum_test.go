package aggregate

import (
	"bytes"
	"math"
	"math/big"
	"math/rand/v2"
	"testing"

	"github.com/DataDog/sketches-go/ddsketch/mapping"
	"github.com/axiomhq/hyperloglog"

	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/schema"
)

func exactBig(vals []float64) float64 {
	s := new(big.Float).SetPrec(4096)
	for _, v := range vals {
		s.Add(s, new(big.Float).SetFloat64(v))
	}
	f, _ := s.Float64() // the accuracy flag: rounding to float64 is the point
	return f
}

func TestXsum(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	randMixed := func(n int) []float64 {
		out := make([]float64, n)
		for i := range out {
			out[i] = r.NormFloat64() * math.Pow(2, float64(r.IntN(200)-100))
		}
		return out
	}
	cases := []struct {
		name string
		vals []float64
		want float64 // NaN: compare with big.Float
	}{
		{"empty", nil, 0},
		{"one", []float64{1.5}, 1.5},
		{"cancel", []float64{1e308, 1, -1e308}, 1},
		{"tiny", []float64{math.SmallestNonzeroFloat64, math.SmallestNonzeroFloat64}, 2 * math.SmallestNonzeroFloat64},
		{"tie to even", []float64{1, math.Pow(2, -53)}, 1},
		{"tie up", []float64{1 + math.Pow(2, -52), math.Pow(2, -53)}, 1 + 2*math.Pow(2, -52)},
		{"sticky decides", []float64{1, math.Pow(2, -53), math.Pow(2, -300)}, 1 + math.Pow(2, -52)},
		{"negative", []float64{-0.1, -0.2}, math.NaN()},
		{"cents", []float64{0.1, 0.2, 0.3, -0.6}, math.NaN()},
		{"max twice overflows", []float64{math.MaxFloat64, math.MaxFloat64}, math.Inf(1)},
		{"max then back", []float64{math.MaxFloat64, math.MaxFloat64, -math.MaxFloat64}, math.MaxFloat64},
		{"inf", []float64{1, math.Inf(1)}, math.Inf(1)},
		{"inf minus inf", []float64{math.Inf(-1), math.Inf(1)}, math.NaN()},
		{"mixed magnitudes", randMixed(5000), math.NaN()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.want
			special := tc.name == "inf minus inf"
			if math.IsNaN(want) && !special {
				want = exactBig(tc.vals)
			}
			var x xsum
			for _, v := range tc.vals {
				x.add(v)
			}
			got := x.float64()
			if special {
				if !math.IsNaN(got) {
					t.Fatalf("got %v, want NaN", got)
				}
				return
			}
			if math.Float64bits(got) != math.Float64bits(want) {
				t.Fatalf("sum %v (%x), want %v (%x)", got, math.Float64bits(got), want, math.Float64bits(want))
			}
			// Any order, any split into merged parts: the same bits.
			perm := r.Perm(len(tc.vals))
			var a, b xsum
			for i, p := range perm {
				if i%3 == 0 {
					a.add(tc.vals[p])
				} else {
					b.add(tc.vals[p])
				}
			}
			a.merge(&b)
			if g := a.float64(); math.Float64bits(g) != math.Float64bits(want) {
				t.Fatalf("merged sum %v, want %v", g, want)
			}
			// The parts encoding carries the exact value.
			var back MeasureState
			if err := back.addSumParts(appendParts(nil, x.parts())); err != nil {
				t.Fatal(err)
			}
			restored := back.fsum
			if restored == nil { // no parts: the exact zero
				restored = new(xsum)
			}
			if restored.w != x.w && !math.IsInf(want, 0) {
				t.Fatal("parts do not restore the exact sum")
			}
		})
	}
	var bad MeasureState
	if err := bad.addSumParts([]byte{1, 2, 3}); err == nil {
		t.Error("3-byte parts accepted")
	}
}

func TestMinMaxOrder(t *testing.T) {
	f := measureSpec{Measure: &schema.Measure{Kind: schema.KindMin}, typ: schema.TypeFloat64}
	i := measureSpec{Measure: &schema.Measure{Kind: schema.KindMax}, typ: schema.TypeInt64}
	fb := math.Float64bits
	cases := []struct {
		name   string
		spec   *measureSpec
		vals   []uint64
		lo, hi uint64
	}{
		{"floats", &f, []uint64{fb(3), fb(-1.5), fb(2)}, fb(-1.5), fb(3)},
		{"signed zeros", &f, []uint64{fb(0), fb(math.Copysign(0, -1))}, fb(math.Copysign(0, -1)), fb(0)},
		{"signed zeros reversed", &f, []uint64{fb(math.Copysign(0, -1)), fb(0)}, fb(math.Copysign(0, -1)), fb(0)},
		{"nan ignored", &f, []uint64{fb(math.NaN()), fb(1)}, fb(1), fb(1)},
		{"ints", &i, []uint64{5, uint64(1<<63 | 7), 3}, uint64(1<<63 | 7), 5},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var s MeasureState
			for _, v := range tc.vals {
				tc.spec.addMinMax(&s, v)
			}
			if s.lo != tc.lo || s.hi != tc.hi {
				t.Fatalf("min/max %x/%x, want %x/%x", s.lo, s.hi, tc.lo, tc.hi)
			}
		})
	}
}

func TestAddInt64(t *testing.T) {
	cases := []struct {
		name     string
		a, b     int64
		overflow bool
	}{
		{"small", 1, 2, false}, {"max", math.MaxInt64, 1, true}, {"min", math.MinInt64, -1, true},
		{"mixed", math.MaxInt64, math.MinInt64, false}, {"to max", math.MaxInt64 - 1, 1, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, o := addInt64(tc.a, tc.b); o != tc.overflow {
				t.Fatalf("overflow %v", o)
			}
		})
	}
}

// TestHLLCanonical: the encoding depends only on the set of hashes, not on
// order, on how they were split into merged sketches, nor on whether a
// sketch went dense through inserts or through merging sparse ones.
func TestHLLCanonical(t *testing.T) {
	for _, n := range []int{0, 1, 100, 5000, 20000, 200000} {
		r := rand.New(rand.NewPCG(uint64(n), 3))
		hs := make([]uint64, n)
		for i := range hs {
			hs[i] = r.Uint64()
		}
		build := func(parts int, dense bool) []byte {
			sks := make([]*hyperloglog.Sketch, parts)
			for i := range sks {
				var err error
				if sks[i], err = hyperloglog.NewSketch(14, !dense); err != nil {
					t.Fatal(err)
				}
			}
			for _, p := range r.Perm(n) {
				sks[p%parts].InsertHash(hs[p])
			}
			for _, s := range sks[1:] {
				if err := sks[0].Merge(s); err != nil {
					t.Fatal(err)
				}
			}
			est, b, err := encodeHLL(sks[0])
			if err != nil {
				t.Fatal(err)
			}
			if n > 0 && math.Abs(float64(est)-float64(n)) > 3*0.0081*float64(n)+1 {
				t.Errorf("n=%d: estimate %d", n, est)
			}
			return b
		}
		want := build(1, false)
		for _, c := range []struct {
			parts int
			dense bool
		}{{1, true}, {2, false}, {7, false}, {3, true}} {
			if n <= 16384 && c.dense {
				continue // a dense sketch of few values stays dense: that form is not canonical, and never produced
			}
			if got := build(c.parts, c.dense); !bytes.Equal(got, want) {
				t.Errorf("n=%d parts=%d dense=%v: encoding differs", n, c.parts, c.dense)
			}
		}
		if n > 0 {
			back, err := decodeHLL(want, 14)
			if err != nil {
				t.Fatal(err)
			}
			_, again, err := encodeHLL(back)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again, want) {
				t.Errorf("n=%d: decode and encode changes the bytes", n)
			}
		}
	}
	if _, err := decodeHLL([]byte{2, 14, 0}, 14); err == nil {
		t.Error("short sketch accepted")
	}
	s, err := hyperloglog.NewSketch(12, true)
	if err != nil {
		t.Fatal(err)
	}
	s.InsertHash(1)
	b, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := decodeHLL(b, 14); err == nil {
		t.Error("sketch of another precision accepted")
	}
}

func TestDDSketchRoundTrip(t *testing.T) {
	tbl := testkit.SampleTable(t)
	specs, err := newMeasureSpecs(tbl)
	if err != nil {
		t.Fatal(err)
	}
	m := &specs[5]
	var a, b MeasureState
	m.init(&a)
	m.init(&b)
	r := rand.New(rand.NewPCG(5, 5))
	for i := 0; i < 10000; i++ {
		v := math.Exp(r.NormFloat64() * 3)
		dst := &a
		if i%2 != 0 {
			dst = &b
		}
		if err := dst.dd.Add(v); err != nil {
			t.Fatal(err)
		}
	}
	var ab, ba MeasureState
	m.init(&ab)
	m.init(&ba)
	for _, mg := range []struct{ into, from *MeasureState }{{&ab, &a}, {&ab, &b}, {&ba, &b}, {&ba, &a}} {
		if err := m.merge(mg.into, mg.from); err != nil {
			t.Fatal(err)
		}
	}
	if ab.dd.GetCount() != 10000 || ba.dd.GetCount() != 10000 {
		t.Fatalf("merged sketches count %v and %v values, want 10000", ab.dd.GetCount(), ba.dd.GetCount())
	}
	if !bytes.Equal(encodeDD(ab.dd), encodeDD(ba.dd)) {
		t.Error("merge order changes the sketch encoding")
	}
	back, err := m.decodeDD(encodeDD(ab.dd))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []float64{0, 0.5, 0.99, 1} {
		x, err := ab.dd.GetValueAtQuantile(q)
		if err != nil {
			t.Fatal(err)
		}
		y, err := back.GetValueAtQuantile(q)
		if err != nil {
			t.Fatal(err)
		}
		if x != y {
			t.Errorf("q%v: %v before, %v after a round trip", q, x, y)
		}
	}
	if _, err := m.decodeDD([]byte{0xff, 0xff}); err == nil {
		t.Error("garbage sketch accepted")
	}
	other := measureSpec{Measure: &schema.Measure{Name: "x", RelativeAccuracy: 0.05}}
	if other.mapping, err = newMappingForTest(0.05); err != nil {
		t.Fatal(err)
	}
	if _, err := other.decodeDD(encodeDD(ab.dd)); err == nil {
		t.Error("sketch of another accuracy accepted")
	}
}

func newMappingForTest(ra float64) (*mapping.LogarithmicMapping, error) {
	return mapping.NewLogarithmicMapping(ra)
}

// A float sum is allocated at its first value other than ±0; until then the
// state's sum is the exact zero, and merging either way round, encoding and
// reading it back behave as with an allocated zero.
func TestFloatSumAllocatedAtFirstValue(t *testing.T) {
	var zeros MeasureState
	zeros.addFloat(0)
	zeros.addFloat(math.Copysign(0, -1))
	if zeros.fsum != nil {
		t.Fatal("±0 allocated a sum")
	}
	if got := zeros.SumFloat(); math.Float64bits(got) != 0 {
		t.Fatalf("sum of zeros %v, want +0", got)
	}
	if parts := zeros.fsum.parts(); len(parts) != 0 {
		t.Fatalf("parts of no sum %v, want none", parts)
	}
	var some MeasureState
	for _, v := range []float64{0.1, 0, 0.2, 1e300, -1e300} {
		some.addFloat(v)
	}
	want := some.SumFloat()
	if want != 0.30000000000000004 && want != 0.3 {
		t.Fatalf("exact sum %v", want)
	}
	a, b := zeros, some // merged into the one without a sum, and the other way
	a.mergeSum(&some)
	b.mergeSum(&zeros)
	if a.SumFloat() != want || b.SumFloat() != want {
		t.Fatalf("merged %v and %v, want %v", a.SumFloat(), b.SumFloat(), want)
	}
	if a.fsum == some.fsum {
		t.Fatal("merge shares the other state's sum")
	}
	var back MeasureState
	if err := back.addSumParts(appendParts(nil, some.fsum.parts())); err != nil || back.SumFloat() != want {
		t.Fatalf("read back %v, %v; want %v", back.SumFloat(), err, want)
	}
	var nan MeasureState
	nan.addFloat(math.NaN())
	if !math.IsNaN(nan.SumFloat()) {
		t.Fatalf("NaN sum %v", nan.SumFloat())
	}
}
