package aggregate

import (
	"bytes"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/DataDog/sketches-go/ddsketch"
	"github.com/DataDog/sketches-go/ddsketch/mapping"
	"github.com/DataDog/sketches-go/ddsketch/store"
)

// appendDDProto must write exactly what DDSketch.EncodeProto writes: the
// summary files' sketch columns keep their bytes, and summaries written
// before it stay equal to the ones written after.
func TestAppendDDProtoMatchesEncodeProto(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	for _, ra := range []float64{0.01, 0.05} {
		m, err := mapping.NewLogarithmicMapping(ra)
		if err != nil {
			t.Fatal(err)
		}
		newDD := func() *ddsketch.DDSketch {
			return ddsketch.NewDDSketch(m, store.NewDenseStore(), store.NewDenseStore())
		}
		values := map[string]func() float64{
			"lognormal":  func() float64 { return math.Exp(r.NormFloat64() * 3) },
			"signed":     func() float64 { return r.NormFloat64() * 1000 },
			"with zeros": func() float64 { return float64(r.IntN(3)) },
			"negative":   func() float64 { return -math.Exp(r.NormFloat64()) },
			"sparse":     func() float64 { return math.Pow(10, float64(r.IntN(12))-6) },
		}
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
				for which, dd := range map[string]*ddsketch.DDSketch{"a": a, "b": b, "merged": merged} {
					var want bytes.Buffer
					dd.EncodeProto(&want)
					got, ok := appendDDProto([]byte("prefix"), dd)
					if !ok {
						t.Fatalf("%s ra %v n %d %s: not encoded", name, ra, n, which)
					}
					if !bytes.Equal(got[len("prefix"):], want.Bytes()) || string(got[:len("prefix")]) != "prefix" {
						t.Fatalf("%s ra %v n %d %s: appendDDProto\n%x\nEncodeProto\n%x", name, ra, n, which, got, want.Bytes())
					}
				}
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
