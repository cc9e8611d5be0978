package aggregate

import (
	"time"

	"github.com/DataDog/sketches-go/ddsketch/mapping"

	"github.com/sluicehq/sluice/schema"
)

// CompactTableFenced exposes the leased compaction to the external tests.
var CompactTableFenced = (*Compactor).compactTable

// SetLockerClock sets the clock a locker cuts slots on.
func SetLockerClock(l *BucketLocker, now func() time.Time) { l.now = now }

// Corruptions of a measure's state, for the external test that checks the
// exact recomputation notices each.

// DecrementCount takes one from the state's count of rows or values.
func DecrementCount(s *MeasureState) { s.n-- }

// AddToFloatSum adds x to the exact float sum.
func AddToFloatSum(s *MeasureState, x float64) { s.addFloat(x) }

// SetMaxBits sets the largest value seen to the float64 with these bits.
func SetMaxBits(s *MeasureState, bits uint64) { s.hi = bits }

// HashUint64 is the hash the engine inserts integers into HyperLogLog with.
var HashUint64 = hashUint64

// SmallQuantileValues bounds the integer values whose sketch bin the fold
// looks up instead of computing.
const SmallQuantileValues = smallQuantileValues

// IntQuantiles finds the table's integer quantiles measure: its index in a
// row's measures and the mapping its sketches use (-1 when there is none).
func IntQuantiles(t *schema.Table) (int, mapping.IndexMapping, error) {
	specs, err := newMeasureSpecs(t)
	if err != nil {
		return -1, nil, err
	}
	for i := range specs {
		if specs[i].Kind == schema.KindQuantiles && !specs[i].isFloat() {
			return i, specs[i].mapping, nil
		}
	}
	return -1, nil, nil
}

// EncodedSketch is a state's DDSketch as the summary stores it.
func EncodedSketch(s *MeasureState) []byte { return encodeDD(s.dd) }

// EncodeDDSketch encodes dd the way the summary stores sketches.
var EncodeDDSketch = encodeDD
