package kinesis

import (
	"fmt"
	"math/bits"

	"github.com/sluicehq/sluice/lake"
)

// Kinesis sequence numbers are decimals of up to 186 bits, more than a
// lake.Position holds. Within one shard they only grow, and their spread
// does (Kinesis keeps a per-shard counter above some 80 low bits, so 2^48
// records fit): a record's position is its sequence number minus the
// shard's starting sequence number, which the chain keeps as its source
// incarnation (the genesis's SourceID). The mapping keeps the shard's order
// and is exact both ways: a chain end turns back into the sequence number
// to read after.
//
// Every record's position is computed on the read path, so the arithmetic
// is fixed-width (three 64-bit words) rather than math/big's: parsing two
// 56-digit decimals with math/big was a tenth of the ingester's time.

// seq192 is a sequence number in three 64-bit words, most significant
// first.
type seq192 [3]uint64

// maxSeqDigits is the length of 2^192-1 in decimal: longer is refused
// without arithmetic.
const maxSeqDigits = 58

// pow10[k] is 10^k, for k up to 19 (the most that fits in 64 bits).
var pow10 = func() (p [20]uint64) {
	p[0] = 1
	for k := 1; k < len(p); k++ {
		p[k] = p[k-1] * 10
	}
	return p
}()

// parseSeq parses a sequence number: decimal digits only, below 2^192.
func parseSeq(s string) (seq192, error) {
	if s == "" || len(s) > maxSeqDigits {
		return seq192{}, fmt.Errorf("kinesis: bad sequence number %q", s)
	}
	var n seq192
	for i := 0; i < len(s); {
		// Up to nineteen digits at a time: n = n*10^k + their value.
		k := min(19, len(s)-i)
		var v uint64
		for _, c := range []byte(s[i : i+k]) {
			if c < '0' || c > '9' {
				return seq192{}, fmt.Errorf("kinesis: bad sequence number %q", s)
			}
			v = v*10 + uint64(c-'0')
		}
		carry := v
		for w := 2; w >= 0; w-- {
			hi, lo := bits.Mul64(n[w], pow10[k])
			lo, c2 := bits.Add64(lo, carry, 0)
			n[w], carry = lo, hi+c2
		}
		if carry != 0 {
			return seq192{}, fmt.Errorf("kinesis: bad sequence number %q: more than 192 bits", s)
		}
		i += k
	}
	return n, nil
}

// sub returns a-b and whether it borrowed (a < b).
func (a seq192) sub(b seq192) (seq192, bool) {
	var d seq192
	var borrow uint64
	for w := 2; w >= 0; w-- {
		d[w], borrow = bits.Sub64(a[w], b[w], borrow)
	}
	return d, borrow != 0
}

// add returns a+b and whether it overflowed 192 bits.
func (a seq192) add(b seq192) (seq192, bool) {
	var s seq192
	var carry uint64
	for w := 2; w >= 0; w-- {
		s[w], carry = bits.Add64(a[w], b[w], carry)
	}
	return s, carry != 0
}

// String is the decimal spelling, without leading zeros.
func (a seq192) String() string {
	if a == (seq192{}) {
		return "0"
	}
	var buf [maxSeqDigits]byte
	i := len(buf)
	for a != (seq192{}) {
		// a, r = a/10^19, a%10^19: nineteen digits per division.
		const chunk = 10_000_000_000_000_000_000
		var r uint64
		for w := 0; w < 3; w++ {
			a[w], r = bits.Div64(r, a[w], chunk)
		}
		for k := 0; k < 19 && (r != 0 || a != (seq192{})); k++ {
			i--
			buf[i] = byte('0' + r%10)
			r /= 10
		}
	}
	return string(buf[i:])
}

// positionOf returns seq's position in the shard that starts at base.
func positionOf(base, seq string) (lake.Position, error) {
	b, err := parseSeq(base)
	if err != nil {
		return lake.Position{}, err
	}
	n, err := parseSeq(seq)
	if err != nil {
		return lake.Position{}, err
	}
	d, negative := n.sub(b)
	if negative || d[0] != 0 {
		return lake.Position{}, fmt.Errorf("kinesis: sequence number %s is not within 2^128 after the shard's start %s", seq, base)
	}
	return lake.Uint128Position(d[1], d[2]), nil
}

// sequenceAt is the sequence number at position p of the shard that
// starts at base.
func sequenceAt(base string, p lake.Position) (string, error) {
	b, err := parseSeq(base)
	if err != nil {
		return "", err
	}
	hi, lo := p.Uint128()
	n, overflow := b.add(seq192{0, hi, lo})
	if overflow {
		return "", fmt.Errorf("kinesis: position %s after the shard's start %s is past 2^192", p, base)
	}
	return n.String(), nil
}
