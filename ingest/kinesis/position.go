package kinesis

import (
	"fmt"
	"math/big"

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

var maxPosition = new(big.Int).Lsh(big.NewInt(1), 128)

func parseSeq(s string) (*big.Int, error) {
	n, ok := new(big.Int).SetString(s, 10)
	if !ok || n.Sign() < 0 {
		return nil, fmt.Errorf("kinesis: bad sequence number %q", s)
	}
	return n, nil
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
	d := n.Sub(n, b)
	if d.Sign() < 0 || d.Cmp(maxPosition) >= 0 {
		return lake.Position{}, fmt.Errorf("kinesis: sequence number %s is not within 2^128 after the shard's start %s", seq, base)
	}
	return lake.ParsePosition(d.String())
}

// sequenceAt is the sequence number at position p of the shard that
// starts at base.
func sequenceAt(base string, p lake.Position) (string, error) {
	b, err := parseSeq(base)
	if err != nil {
		return "", err
	}
	d, _ := new(big.Int).SetString(p.String(), 10)
	return b.Add(b, d).String(), nil
}
