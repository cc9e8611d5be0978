package lake

import (
	"encoding/json"
	"math/big"
	"testing"
)

func TestPositionRoundTrip(t *testing.T) {
	for _, s := range []string{
		"0", "1", "9223372036854775807", "18446744073709551615", "18446744073709551616",
		// A Kinesis sequence number (56 digits would not fit; real ones are up to 128 bits).
		"49590338271490256608559692538361571095921575989136588898"[:38],
		"340282366920938463463374607431768211455", // 2^128 - 1
	} {
		p, err := ParsePosition(s)
		if err != nil {
			t.Fatalf("parse %s: %v", s, err)
		}
		if p.String() != s {
			t.Errorf("%s -> %s", s, p.String())
		}
		want, _ := new(big.Int).SetString(s, 10)
		got := new(big.Int).Lsh(new(big.Int).SetUint64(p.hi), 64)
		got.Or(got, new(big.Int).SetUint64(p.lo))
		if got.Cmp(want) != 0 {
			t.Errorf("%s parsed to %s", s, got)
		}
		data, _ := json.Marshal(p)
		var back Position
		if err := json.Unmarshal(data, &back); err != nil || back != p {
			t.Errorf("json %s -> %v, %v", data, back, err)
		}
	}
	for _, bad := range []string{"", "-1", "01", "1.5", " 1", "340282366920938463463374607431768211456", "9999999999999999999999999999999999999999"} {
		if _, err := ParsePosition(bad); err == nil {
			t.Errorf("parse %q: want an error", bad)
		}
	}
}

func TestPositionOrder(t *testing.T) {
	max64, _ := ParsePosition("18446744073709551615")
	over, _ := ParsePosition("18446744073709551616")
	if max64.Succ() != over || !max64.Less(over) || over.Compare(max64) != 1 || max64.Compare(max64) != 0 {
		t.Errorf("carry across 64 bits: %s + 1 = %s", max64, max64.Succ())
	}
	if d := PositionOf(10).Distance(PositionOf(500)); d != 490 {
		t.Errorf("distance = %d, want 490", d)
	}
	if d := PositionOf(500).Distance(PositionOf(10)); d != 0 {
		t.Errorf("backwards distance = %d, want 0", d)
	}
	if d := PositionOf(0).Distance(over); d != 1<<63-1 {
		t.Errorf("huge distance = %d, want capped", d)
	}
	if n, ok := PositionOf(42).Int64(); !ok || n != 42 {
		t.Errorf("Int64 = %d, %v", n, ok)
	}
	if _, ok := over.Int64(); ok {
		t.Error("Int64 of a 65-bit position: want false")
	}
}
