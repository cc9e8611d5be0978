package aggregate

import "time"

// CompactTableFenced exposes the leased compaction to the external tests.
var CompactTableFenced = (*Compactor).compactTable

// SetLockerClock sets the clock a locker cuts slots on.
func SetLockerClock(l *BucketLocker, now func() time.Time) { l.now = now }
