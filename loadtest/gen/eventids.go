package gen

import "encoding/hex"

// EventIDKey identifies the event ids g makes: give it to NewEventIDs.
func (g *Generator) EventIDKey() uint64 { return g.idKey }

// EventIDs recognises the event ids made by a set of generators and numbers
// them densely (a generator's sequence number, interleaved across the
// generators), so that a verifier can keep one bit per event instead of the
// id or a hash of it. It reads only what the generators wrote: an id is
// theirs exactly when its second half is the one its first half implies.
type EventIDs struct {
	keys []uint64
}

// maxEventSeq bounds the sequence numbers Index accepts, and with them the
// bits a caller keeps: far beyond any run, far below a harmful allocation.
const maxEventSeq = 1 << 36

// NewEventIDs recognises the ids of the generators with these keys.
func NewEventIDs(keys ...uint64) *EventIDs {
	return &EventIDs{keys: append([]uint64(nil), keys...)}
}

// Index is the number of the event id s (32 hex digits, as in the JSON):
// sequence*len(keys) + the generator's place. ok is false for an id none of
// the generators made.
func (e *EventIDs) Index(s []byte) (n uint64, ok bool) {
	var id [16]byte
	if len(s) != 2*len(id) {
		return 0, false
	}
	if _, err := hex.Decode(id[:], s); err != nil {
		return 0, false
	}
	hi, lo := getUint64(id[:8]), getUint64(id[8:])
	for i, k := range e.keys {
		if mix64(hi+k) != lo {
			continue
		}
		seq := unmix64(hi) ^ k
		if seq >= maxEventSeq {
			return 0, false
		}
		return seq*uint64(len(e.keys)) + uint64(i), true
	}
	return 0, false
}

func getUint64(b []byte) uint64 {
	_ = b[7]
	var v uint64
	for _, c := range b[:8] {
		v = v<<8 | uint64(c)
	}
	return v
}

// unmix64 inverts mix64: each of its steps is a bijection on 64 bits.
func unmix64(x uint64) uint64 {
	x = unxorShift(x, 31)
	x *= invMix2
	x = unxorShift(x, 27)
	x *= invMix1
	x = unxorShift(x, 30)
	return x - 0x9e3779b97f4a7c15
}

// unxorShift inverts y = x ^ (x >> s): the top s bits of x are those of y,
// and each pass recovers s more.
func unxorShift(y uint64, s uint) uint64 {
	x := y
	for range (63 + s) / s {
		x = y ^ (x >> s)
	}
	return x
}

// The inverses of mix64's multipliers modulo 2^64.
var invMix1, invMix2 = mulInverse(0xbf58476d1ce4e5b9), mulInverse(0x94d049bb133111eb)

// mulInverse is the inverse of odd c modulo 2^64, by Newton's iteration:
// c is its own inverse to 3 bits (c*c = 1 mod 8), and each step doubles
// the correct low bits.
func mulInverse(c uint64) uint64 {
	inv := c
	for range 5 {
		inv *= 2 - c*inv
	}
	return inv
}
