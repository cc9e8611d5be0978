package kinesis

import (
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
