package kinesis

import (
	"math/big"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/lake"
)

func TestPositionRoundTrip(t *testing.T) {
	// Real and kinesalite sequence numbers are 56 digits: past 2^128.
	base := "49590338271490256608559692538361571095921575989136588898"
	for _, tc := range []struct {
		name, seq string
		want      string // position, "" for an error
	}{
		{"the start itself", base, "0"},
		{"a later record", "49590338271490256608559692540779422735150834338549071874", "2417851639229258349412482976"},
		{"before the start", "49590338271490256608559692538361571095921575989136588897", ""},
		{"beyond 2^128 after", "49590338271490266608559692538361571095921575989136588898", ""},
		{"not a number", "49x", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := positionOf(base, tc.seq)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("positionOf = %s, want an error", p)
				}
				return
			}
			if err != nil || p.String() != tc.want {
				t.Fatalf("positionOf = %s, %v; want %s", p, err, tc.want)
			}
			back, err := sequenceAt(base, p)
			if err != nil || back != tc.seq {
				t.Fatalf("sequenceAt = %s, %v; want %s", back, err, tc.seq)
			}
		})
	}
	a, _ := positionOf(base, "49590338271490256608559692538361571095921575989136588899")
	b, _ := positionOf(base, "49590338271490256608559692538361571095921575989136588900")
	if !a.Less(b) || a.Succ() != b {
		t.Errorf("order not kept: %s, %s", a, b)
	}
	if _, err := sequenceAt("x", lake.PositionOf(1)); err == nil {
		t.Error("sequenceAt of a bad base: want an error")
	}
}

// The fixed-width arithmetic against math/big, on random sequence numbers
// of every length up to 58 digits and offsets of every size up to 2^128.
func TestPositionMatchesBigArithmetic(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	two128 := new(big.Int).Lsh(big.NewInt(1), 128)
	two192 := new(big.Int).Lsh(big.NewInt(1), 192)
	randBelow := func(limit *big.Int) *big.Int {
		bitsN := 1 + rng.IntN(limit.BitLen())
		n := new(big.Int)
		for i := 0; i < bitsN; i++ {
			if rng.IntN(2) == 1 {
				n.SetBit(n, i, 1)
			}
		}
		return n.Mod(n, limit)
	}
	for i := 0; i < 20000; i++ {
		base := randBelow(two192)
		off := randBelow(two128)
		if i%7 == 0 {
			off.SetInt64(int64(rng.IntN(3))) // the start and its neighbours
		}
		seq := new(big.Int).Add(base, off)
		if seq.Cmp(two192) >= 0 {
			if _, err := sequenceAt(base.String(), mustPosition(t, off)); err == nil {
				t.Fatalf("sequenceAt(%s, %s): past 2^192 without an error", base, off)
			}
			continue
		}
		p, err := positionOf(base.String(), seq.String())
		if err != nil || p.String() != off.String() {
			t.Fatalf("positionOf(%s, %s) = %s, %v; want %s", base, seq, p, err, off)
		}
		back, err := sequenceAt(base.String(), p)
		if err != nil || back != seq.String() {
			t.Fatalf("sequenceAt(%s, %s) = %s, %v; want %s", base, p, back, err, seq)
		}
		if off.Sign() > 0 {
			before := new(big.Int).Sub(base, big.NewInt(1))
			if before.Sign() >= 0 {
				if _, err := positionOf(base.String(), before.String()); err == nil {
					t.Fatalf("positionOf(%s, %s): before the start without an error", base, before)
				}
			}
		}
		if far := new(big.Int).Add(base, two128); far.Cmp(two192) < 0 {
			if _, err := positionOf(base.String(), far.String()); err == nil {
				t.Fatalf("positionOf(%s, %s): 2^128 after the start without an error", base, far)
			}
		}
	}
	for _, bad := range []string{"", "+5", "-1", "1_000", " 1", "1 ", strings.Repeat("9", 59), new(big.Int).Set(two192).String()} {
		if _, err := parseSeq(bad); err == nil {
			t.Errorf("parseSeq(%q): want an error", bad)
		}
	}
	if n, err := parseSeq(new(big.Int).Sub(two192, big.NewInt(1)).String()); err != nil || n != (seq192{^uint64(0), ^uint64(0), ^uint64(0)}) {
		t.Errorf("parseSeq(2^192-1) = %v, %v", n, err)
	}
}

func mustPosition(t *testing.T, n *big.Int) lake.Position {
	t.Helper()
	p, err := lake.ParsePosition(n.String())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func BenchmarkPositionOf(b *testing.B) {
	base := "49590338271490256608559692538361571095921575989136588898"
	seq := "49590338271490256608559692540779422735150834338549071874"
	for b.Loop() {
		if _, err := positionOf(base, seq); err != nil {
			b.Fatal(err)
		}
	}
}
