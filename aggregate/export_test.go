package aggregate

import "time"

// CompactTableFenced exposes the leased compaction to the external tests.
var CompactTableFenced = (*Compactor).compactTable

// SetLockerClock sets the clock a locker cuts slots on.
func SetLockerClock(l *BucketLocker, now func() time.Time) { l.now = now }

// Corruptions of a measure's state, for the external test that checks the
// exact recomputation notices each.

// DecrementCount takes one from the state's count of rows or values.
func DecrementCount(s *MeasureState) { s.n-- }

// AddToFloatSum adds x to the exact float sum.
func AddToFloatSum(s *MeasureState, x float64) { s.fsum.add(x) }

// SetMaxBits sets the largest value seen to the float64 with these bits.
func SetMaxBits(s *MeasureState, bits uint64) { s.hi = bits }

// HashUint64 is the hash the engine inserts integers into HyperLogLog with.
var HashUint64 = hashUint64
