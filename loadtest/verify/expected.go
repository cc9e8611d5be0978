package verify

import (
	"sync"
)

// Expected is what a producer was told is durably in the source: per
// partition, the offsets of acknowledged records, good (they must land in
// raw objects) and malformed (they must land in dead letters). It is safe
// for concurrent use, e.g. from a Kafka client's acknowledgement callbacks.
//
// A position added as both good and bad counts as misfiled wherever it
// ends up.
type Expected struct {
	mu   sync.Mutex
	good map[string]*offsetBag
	bad  map[string]*offsetBag
}

// NewExpected returns an empty set.
func NewExpected() *Expected {
	return &Expected{good: map[string]*offsetBag{}, bad: map[string]*offsetBag{}}
}

// AddGood records that the record at partition/offset is well-formed.
func (e *Expected) AddGood(partition string, offset int64) { e.add(e.good, partition, offset) }

// AddBad records that the record at partition/offset is malformed and
// belongs in the dead letters.
func (e *Expected) AddBad(partition string, offset int64) { e.add(e.bad, partition, offset) }

// AddGoods records AddGood for every position, taking the lock once.
func (e *Expected) AddGoods(positions []Position) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, p := range positions {
		e.addLocked(e.good, p.Partition, p.Offset)
	}
}

func (e *Expected) add(m map[string]*offsetBag, partition string, offset int64) {
	e.mu.Lock()
	e.addLocked(m, partition, offset)
	e.mu.Unlock()
}

func (e *Expected) addLocked(m map[string]*offsetBag, partition string, offset int64) {
	b := m[partition]
	if b == nil {
		b = &offsetBag{}
		m[partition] = b
	}
	b.add(offset)
}

// Counts returns how many good and bad positions were added (a position
// added twice counts twice).
func (e *Expected) Counts() (good, bad int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, b := range e.good {
		good += b.count()
	}
	for _, b := range e.bad {
		bad += b.count()
	}
	return good, bad
}

// Ends returns, per partition, one past the highest expected offset: where
// a partition's commit chain must have got to before everything can be
// committed.
func (e *Expected) Ends() map[string]int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[string]int64{}
	for _, m := range []map[string]*offsetBag{e.good, e.bad} {
		for p, b := range m {
			for _, r := range b.runs {
				out[p] = max(out[p], r.hi)
			}
		}
	}
	return out
}

// sets returns the normalized good and bad positions of every partition.
func (e *Expected) sets() (good, bad map[string][]span) {
	e.mu.Lock()
	defer e.mu.Unlock()
	good, bad = map[string][]span{}, map[string][]span{}
	for p, b := range e.good {
		good[p] = normalize(append([]span(nil), b.runs...))
	}
	for p, b := range e.bad {
		bad[p] = normalize(append([]span(nil), b.runs...))
	}
	return good, bad
}

// Forget removes the positions of partition in [lo, hi), good and bad, and
// returns how many it removed of each: records the source itself lost
// (retention deleted them, records before a `latest` start) and that no
// reader can be expected to see.
func (e *Expected) Forget(partition string, lo, hi int64) (good, bad int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return forget(e.good[partition], lo, hi), forget(e.bad[partition], lo, hi)
}

func forget(b *offsetBag, lo, hi int64) int64 {
	if b == nil || hi <= lo {
		return 0
	}
	var n int64
	kept := b.runs[:0:0]
	for _, r := range b.runs {
		cut := span{max(r.lo, lo), min(r.hi, hi)}
		if cut.lo >= cut.hi {
			kept = append(kept, r)
			continue
		}
		n += cut.len()
		if r.lo < cut.lo {
			kept = append(kept, span{r.lo, cut.lo})
		}
		if cut.hi < r.hi {
			kept = append(kept, span{cut.hi, r.hi})
		}
	}
	b.runs = kept
	return n
}

// Merge adds every position of o to e (two producers of one run).
func (e *Expected) Merge(o *Expected) {
	og, ob := o.sets()
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, m := range []struct {
		to   map[string]*offsetBag
		from map[string][]span
	}{{e.good, og}, {e.bad, ob}} {
		for p, spans := range m.from {
			b := m.to[p]
			if b == nil {
				b = &offsetBag{}
				m.to[p] = b
			}
			b.runs = append(b.runs, spans...)
		}
	}
}
