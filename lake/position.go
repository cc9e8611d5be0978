package lake

import (
	"errors"
	"fmt"
	"math/bits"
	"strconv"
)

// Position is a place in one source partition's order: a Kafka offset, a
// Kinesis sequence number (a decimal of up to 128 bits) or a byte offset in
// an inbox file. Every source's positions are unsigned integers below 2^128,
// so one comparable value holds them all and orders them the way the source
// does. In commit records it is written as a decimal string, which every
// JSON reader keeps exactly (a number would lose precision past 2^53).
//
// The zero Position is offset 0. Positions are compared with Compare; ==
// also works, since the representation is canonical.
type Position struct{ hi, lo uint64 }

// ErrBadPosition is wrapped by ParsePosition's errors.
var ErrBadPosition = errors.New("invalid position")

// PositionOf returns the position of a non-negative int64 (a Kafka offset).
// A negative n is a programming error; it panics rather than wrap around.
func PositionOf(n int64) Position {
	if n < 0 {
		panic(fmt.Sprintf("lake: negative position %d", n))
	}
	return Position{lo: uint64(n)}
}

// Uint128Position returns the position hi*2^64 + lo: for sources whose
// positions are computed in fixed-width arithmetic (Kinesis sequence
// numbers relative to their shard's start).
func Uint128Position(hi, lo uint64) Position { return Position{hi, lo} }

// Uint128 returns p's two 64-bit words, most significant first.
func (p Position) Uint128() (hi, lo uint64) { return p.hi, p.lo }

// ParsePosition parses a decimal string of at most 128 bits, without sign,
// spaces or leading zeros (except "0" itself), so each position has exactly
// one spelling.
func ParsePosition(s string) (Position, error) {
	if s == "" || len(s) > 39 || (len(s) > 1 && s[0] == '0') {
		return Position{}, fmt.Errorf("%w: %q", ErrBadPosition, s)
	}
	var p Position
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return Position{}, fmt.Errorf("%w: %q", ErrBadPosition, s)
		}
		// p = p*10 + digit, refusing overflow past 128 bits.
		hiMul, hiLo := bits.Mul64(p.hi, 10)
		loHi, lo := bits.Mul64(p.lo, 10)
		hi, carry := bits.Add64(hiLo, loHi, 0)
		if hiMul != 0 || carry != 0 {
			return Position{}, fmt.Errorf("%w: %q is more than 128 bits", ErrBadPosition, s)
		}
		lo, c2 := bits.Add64(lo, uint64(c-'0'), 0)
		hi, c3 := bits.Add64(hi, 0, c2)
		if c3 != 0 {
			return Position{}, fmt.Errorf("%w: %q is more than 128 bits", ErrBadPosition, s)
		}
		p = Position{hi, lo}
	}
	return p, nil
}

// Compare returns -1, 0 or +1 as p is before, at or after q.
func (p Position) Compare(q Position) int {
	switch {
	case p.hi < q.hi:
		return -1
	case p.hi > q.hi:
		return 1
	case p.lo < q.lo:
		return -1
	case p.lo > q.lo:
		return 1
	}
	return 0
}

// Less reports whether p is before q.
func (p Position) Less(q Position) bool { return p.Compare(q) < 0 }

// Succ is the position right after p: where a link that ends with the
// record at p says the next one starts.
func (p Position) Succ() Position {
	lo, carry := bits.Add64(p.lo, 1, 0)
	return Position{p.hi + carry, lo}
}

// Distance is q - p for p <= q, capped at the largest int64: the size of a
// gap in positions (for Kafka, the number of offsets). It is 0 if q < p.
func (p Position) Distance(q Position) int64 {
	if q.Compare(p) <= 0 {
		return 0
	}
	lo, borrow := bits.Sub64(q.lo, p.lo, 0)
	hi, _ := bits.Sub64(q.hi, p.hi, borrow)
	if hi != 0 || lo > 1<<63-1 {
		return 1<<63 - 1
	}
	return int64(lo)
}

// Int64 returns p as an int64 (a Kafka offset), and false if it does not fit.
func (p Position) Int64() (int64, bool) {
	if p.hi != 0 || p.lo > 1<<63-1 {
		return 0, false
	}
	return int64(p.lo), true
}

// String is the decimal spelling ParsePosition reads.
func (p Position) String() string {
	if p.hi == 0 {
		return strconv.FormatUint(p.lo, 10)
	}
	// Two decimal halves: hi*2^64 + lo split at 10^19.
	const e19 = 10_000_000_000_000_000_000
	var digits [40]byte
	i := len(digits)
	hi, lo := p.hi, p.lo
	for hi != 0 || lo != 0 {
		// (hi, lo) / 10^19 with remainder.
		qhi := hi / e19
		r := hi % e19
		qlo, rem := bits.Div64(r, lo, e19)
		hi, lo = qhi, qlo
		chunk := strconv.FormatUint(rem, 10)
		if hi != 0 || lo != 0 {
			for len(chunk) < 19 {
				chunk = "0" + chunk
			}
		}
		i -= len(chunk)
		copy(digits[i:], chunk)
	}
	return string(digits[i:])
}

// MarshalText writes the decimal string (JSON quotes it).
func (p Position) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText reads what MarshalText wrote.
func (p *Position) UnmarshalText(b []byte) error {
	q, err := ParsePosition(string(b))
	if err != nil {
		return err
	}
	*p = q
	return nil
}
