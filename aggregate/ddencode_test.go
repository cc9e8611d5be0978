package aggregate

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/DataDog/sketches-go/ddsketch"
	"github.com/DataDog/sketches-go/ddsketch/mapping"
	"github.com/DataDog/sketches-go/ddsketch/store"

	"github.com/sluicehq/sluice/schema"
)

// appendDDProto must write exactly what DDSketch.EncodeProto writes: the
// sketches the compact encoding does not hold keep their protobuf bytes.
func TestAppendDDProtoMatchesEncodeProto(t *testing.T) {
	for _, ra := range []float64{0.01, 0.05} {
		m, err := mapping.NewLogarithmicMapping(ra)
		if err != nil {
			t.Fatal(err)
		}
		for name, dd := range testSketches(t, m) {
			var want bytes.Buffer
			dd.EncodeProto(&want)
			got, ok := appendDDProto([]byte("prefix"), dd)
			if !ok {
				t.Fatalf("%s ra %v: not encoded", name, ra)
			}
			if !bytes.Equal(got[len("prefix"):], want.Bytes()) || string(got[:len("prefix")]) != "prefix" {
				t.Fatalf("%s ra %v: appendDDProto\n%x\nEncodeProto\n%x", name, ra, got, want.Bytes())
			}
		}
	}
}

// A sketch appendDDProto does not handle is left to EncodeProto.
func TestAppendDDProtoFallsBack(t *testing.T) {
	cubic, err := mapping.NewCubicallyInterpolatedMapping(0.01)
	if err != nil {
		t.Fatal(err)
	}
	log, err := mapping.NewLogarithmicMapping(0.01)
	if err != nil {
		t.Fatal(err)
	}
	neg := store.NewDenseStore()
	neg.AddWithCount(3, -2) // not a count an aggregation makes; ForEach does not show it
	for name, dd := range map[string]*ddsketch.DDSketch{
		"cubic mapping":  ddsketch.NewDDSketch(cubic, store.NewDenseStore(), store.NewDenseStore()),
		"sparse store":   ddsketch.NewDDSketch(log, store.NewSparseStore(), store.NewDenseStore()),
		"negative count": ddsketch.NewDDSketch(log, store.NewDenseStore(), neg),
	} {
		if err := dd.Add(1.5); err != nil {
			t.Fatal(err)
		}
		if _, ok := appendDDProto(nil, dd); ok {
			t.Errorf("%s: encoded by appendDDProto", name)
		}
		var want bytes.Buffer
		dd.EncodeProto(&want)
		if got := encodeDD(dd); !bytes.Equal(got, want.Bytes()) {
			t.Errorf("%s: encodeDD\n%x\nEncodeProto\n%x", name, got, want.Bytes())
		}
	}
}

// testSketches are sketches of several shapes, each also merged from
// parts, for the encoding tests.
func testSketches(t *testing.T, m mapping.IndexMapping) map[string]*ddsketch.DDSketch {
	t.Helper()
	r := rand.New(rand.NewPCG(3, 5))
	newDD := func() *ddsketch.DDSketch {
		return ddsketch.NewDDSketch(m, store.NewDenseStore(), store.NewDenseStore())
	}
	values := map[string]func() float64{
		"lognormal":  func() float64 { return math.Exp(r.NormFloat64() * 3) },
		"signed":     func() float64 { return r.NormFloat64() * 1000 },
		"with zeros": func() float64 { return float64(r.IntN(3)) },
		"negative":   func() float64 { return -math.Exp(r.NormFloat64()) },
		"sparse":     func() float64 { return math.Pow(10, float64(r.IntN(12))-6) },
		"latency ms": func() float64 { return float64(1 + r.IntN(2000)) },
	}
	out := map[string]*ddsketch.DDSketch{}
	for name, next := range values {
		for _, n := range []int{0, 1, 2, 17, 5000} {
			a, b := newDD(), newDD()
			for i := range n {
				dst := a
				if i%3 == 0 {
					dst = b
				}
				if err := dst.Add(next()); err != nil {
					t.Fatal(err)
				}
			}
			merged := newDD()
			for _, s := range []*ddsketch.DDSketch{b, a} {
				if err := merged.MergeWith(s); err != nil {
					t.Fatal(err)
				}
			}
			out[fmt.Sprintf("%s n=%d part", name, n)] = a
			out[fmt.Sprintf("%s n=%d merged", name, n)] = merged
		}
	}
	big := newDD()
	if err := big.AddWithCount(3.5, 1<<40); err != nil { // counts beyond one varint byte
		t.Fatal(err)
	}
	if err := big.AddWithCount(0, 1<<53); err != nil {
		t.Fatal(err)
	}
	out["large counts"] = big
	return out
}

// sketchContent spells out everything a sketch holds, whatever its stores:
// its mapping, zero count, and every non-empty bin with its count.
func sketchContent(dd *ddsketch.DDSketch) string {
	var b strings.Builder
	fmt.Fprintf(&b, "mapping %s zero %v", dd.IndexMapping, dd.GetZeroCount())
	for i, s := range []store.Store{dd.GetNegativeValueStore(), dd.GetPositiveValueStore()} {
		var bins []string
		s.ForEach(func(index int, count float64) bool {
			bins = append(bins, fmt.Sprintf("%d:%v", index, count))
			return false
		})
		slices.Sort(bins)
		fmt.Fprintf(&b, " store %d total %v bins %v", i, s.TotalCount(), bins)
	}
	return b.String()
}

// The compact encoding holds the whole sketch: decoded, it is the sketch
// encoded (the same mapping, zero count, bins and counts), and
// summaries written before it, in protobufs, read as the same sketch.
func TestCompactSketchRoundTrip(t *testing.T) {
	for _, ra := range []float64{0.01, 0.05} {
		m, err := mapping.NewLogarithmicMapping(ra)
		if err != nil {
			t.Fatal(err)
		}
		spec := measureSpec{Measure: &schema.Measure{Name: "q", RelativeAccuracy: ra}, mapping: m}
		for name, dd := range testSketches(t, m) {
			var want bytes.Buffer
			dd.EncodeProto(&want)
			b := encodeDD(dd)
			if b[0] != ddCompactMark {
				t.Fatalf("ra %v %s: not in the compact encoding", ra, name)
			}
			if len(b) > want.Len()+17 {
				t.Errorf("ra %v %s: compact %d bytes, the protobuf %d", ra, name, len(b), want.Len())
			}
			for enc, data := range map[string][]byte{"compact": b, "protobuf": want.Bytes()} {
				back, err := spec.decodeDD(data)
				if err != nil {
					t.Fatalf("ra %v %s: decode %s: %v", ra, name, enc, err)
				}
				if sketchContent(back) != sketchContent(dd) {
					t.Fatalf("ra %v %s: %s decoded to another sketch", ra, name, enc)
				}
				if !bytes.Equal(encodeDD(back), b) {
					t.Fatalf("ra %v %s: %s decoded encodes to other bytes", ra, name, enc)
				}
			}
		}
	}
}

// A sketch the compact encoding cannot hold exactly (a count that is not a
// whole number) is written as a protobuf, and reads back the same.
func TestCompactSketchFallsBackToProto(t *testing.T) {
	m, err := mapping.NewLogarithmicMapping(0.01)
	if err != nil {
		t.Fatal(err)
	}
	spec := measureSpec{Measure: &schema.Measure{Name: "q", RelativeAccuracy: 0.01}, mapping: m}
	for name, add := range map[string][2]float64{"fraction": {7, 0.5}, "zero fraction": {0, 1.25}, "beyond 2^53": {7, 1 << 54}} {
		dd := ddsketch.NewDDSketch(m, store.NewDenseStore(), store.NewDenseStore())
		if err := dd.Add(3); err != nil {
			t.Fatal(err)
		}
		if err := dd.AddWithCount(add[0], add[1]); err != nil {
			t.Fatal(err)
		}
		var want bytes.Buffer
		dd.EncodeProto(&want)
		b := encodeDD(dd)
		if !bytes.Equal(b, want.Bytes()) {
			t.Fatalf("%s: encodeDD is not the protobuf", name)
		}
		back, err := spec.decodeDD(b)
		if err != nil {
			t.Fatal(err)
		}
		if sketchContent(back) != sketchContent(dd) {
			t.Fatalf("%s: decoded to another sketch", name)
		}
	}
}

// A cut or altered compact sketch is an error or some other valid sketch,
// never a panic; one of another accuracy is refused.
func TestCompactSketchRejectsDamage(t *testing.T) {
	m, err := mapping.NewLogarithmicMapping(0.01)
	if err != nil {
		t.Fatal(err)
	}
	spec := measureSpec{Measure: &schema.Measure{Name: "q", RelativeAccuracy: 0.01}, mapping: m}
	b := encodeDD(testSketches(t, m)["signed n=5000 merged"])
	for n := 1; n < len(b); n++ {
		if _, err := spec.decodeDD(b[:n]); err == nil {
			t.Fatalf("cut to %d of %d bytes: decoded without error", n, len(b))
		}
	}
	if _, err := spec.decodeDD(append(bytes.Clone(b), 0)); err == nil {
		t.Error("a byte after the sketch: decoded without error")
	}
	for i := range b {
		for _, bit := range []byte{0x01, 0x40, 0x80} {
			bad := bytes.Clone(b)
			bad[i] ^= bit
			_, _ = spec.decodeDD(bad)
		}
	}
	huge := append(bytes.Clone(b[:17]), 0, 0, 2, 0, 1, 0xff, 0xff, 0xff, 0xff, 0x0f, 1)
	if _, err := spec.decodeDD(huge); err == nil {
		t.Error("a gap beyond the mapping's range: decoded without error")
	}
	m5, err := mapping.NewLogarithmicMapping(0.05)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := spec.decodeDD(encodeDD(testSketches(t, m5)["lognormal n=17 part"])); err == nil {
		t.Error("a sketch of relative accuracy 0.05 read for a measure of 0.01")
	}
}

// quantiles takes a row's quantiles in one walk; each must be, bit for bit,
// what Quantile (GetValueAtQuantile) gives, whatever the order of the
// quantiles and wherever their ranks fall (negative values, zeros).
func TestQuantilesInOneWalkMatchQuantile(t *testing.T) {
	m, err := mapping.NewLogarithmicMapping(0.01)
	if err != nil {
		t.Fatal(err)
	}
	qss := [][]float64{
		{0.5, 0.9, 0.99},
		{0.99, 0.5, 0.9, 0.5},
		{0, 1, 0.25, 0.75, 0.001, 0.999},
		{0.3},
		{0.5, -0.1, 1.5}, // outside [0, 1]: no value, as Quantile
	}
	sketches := testSketches(t, m)
	fraction := ddsketch.NewDDSketch(m, store.NewDenseStore(), store.NewDenseStore())
	for _, v := range []float64{3, 7, 7, 1000} {
		if err := fraction.AddWithCount(v, 0.75); err != nil { // not in the compact encoding: a protobuf
			t.Fatal(err)
		}
	}
	sketches["fractional counts"] = fraction
	for name, dd := range sketches {
		s := MeasureState{dd: dd}
		for _, qs := range qss {
			got := make([]float64, len(qs))
			ok := s.quantiles(qs, got)
			if ok != !dd.IsEmpty() {
				t.Fatalf("%s %v: ok %v for a sketch of %v values", name, qs, ok, dd.GetCount())
			}
			// Encoding the sketch while taking the quantiles gives both
			// the same.
			together := make([]float64, len(qs))
			b, okTogether := s.appendSketchAndQuantiles(newSketchEncoder(), []byte("prefix"), qs, together)
			if okTogether != ok {
				t.Fatalf("%s %v: appendSketchAndQuantiles ok %v, quantiles %v", name, qs, okTogether, ok)
			}
			if !ok {
				if string(b) != "prefix" {
					t.Fatalf("%s: an empty sketch written", name)
				}
				continue
			}
			if want := append([]byte("prefix"), encodeDD(dd)...); !bytes.Equal(b, want) {
				t.Fatalf("%s %v: appendSketchAndQuantiles wrote\n%x\nencodeDD\n%x", name, qs, b, want)
			}
			for i := range qs {
				if math.Float64bits(together[i]) != math.Float64bits(got[i]) {
					t.Errorf("%s %v: quantile %d %v taken while encoding, %v alone", name, qs, i, together[i], got[i])
				}
			}
			for i, q := range qs {
				want, wantOK := s.Quantile(q)
				if !wantOK {
					if !math.IsNaN(got[i]) {
						t.Errorf("%s q%v: %v, Quantile gives no value", name, q, got[i])
					}
					continue
				}
				if math.Float64bits(got[i]) != math.Float64bits(want) {
					t.Errorf("%s q%v (of %v): %v, Quantile %v", name, q, qs, got[i], want)
				}
			}
		}
	}
	if (&MeasureState{}).quantiles([]float64{0.5}, make([]float64, 1)) {
		t.Error("a state without a sketch has quantiles")
	}
}
