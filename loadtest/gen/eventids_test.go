package gen

import (
	"testing"
)

// Every id of every generator gets its own number, the numbers are dense,
// and ids nobody made (another seed, a changed digit, bad hex) get none.
func TestEventIDsNumberEveryIDOnce(t *testing.T) {
	const perGen = 5000
	var gens []*Generator
	var keys []uint64
	for _, seed := range []int64{1, 2, 1_000_003} {
		g, err := New(Config{Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		gens = append(gens, g)
		keys = append(keys, g.EventIDKey())
	}
	ids := NewEventIDs(keys...)
	seen := make([]bool, perGen*len(gens))
	for range perGen {
		for _, g := range gens {
			_, _, ev := g.Next(nil)
			s := []byte(ev.EventIDString())
			n, ok := ids.Index(s)
			if !ok || n >= uint64(len(seen)) {
				t.Fatalf("id %s (seq %d): number %d, %v", s, ev.Seq, n, ok)
			}
			if seen[n] {
				t.Fatalf("id %s: number %d given twice", s, n)
			}
			seen[n] = true
			s[5] ^= 1 // '0'<->'1', 'a'<->'`'...: another id or no hex at all
			if n, ok := ids.Index(s); ok {
				t.Fatalf("altered id %s numbered %d", s, n)
			}
		}
	}
	other, err := New(Config{Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	_, _, ev := other.Next(nil)
	if n, ok := ids.Index([]byte(ev.EventIDString())); ok {
		t.Fatalf("id of another seed numbered %d", n)
	}
	for _, bad := range []string{"", "zz", ev.EventIDString()[:30]} {
		if _, ok := ids.Index([]byte(bad)); ok {
			t.Fatalf("%q numbered", bad)
		}
	}
}

func TestUnmixInvertsMix(t *testing.T) {
	for _, x := range []uint64{0, 1, 2, 1 << 63, ^uint64(0), 0x0123456789abcdef} {
		if got := unmix64(mix64(x)); got != x {
			t.Fatalf("unmix64(mix64(%#x)) = %#x", x, got)
		}
	}
}
