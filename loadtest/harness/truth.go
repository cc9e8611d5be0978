package harness

import (
	"cmp"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/sluicehq/sluice/loadtest/gen"
	"github.com/sluicehq/sluice/loadtest/verify"
	"github.com/sluicehq/sluice/schema"
)

// Bounds on what Truth keeps beyond the per-window groups and the position
// runs, so that a long run's memory stays flat.
const (
	// maxBadReasons is how many malformed positions keep their expected
	// reason for the dead-letter check; the rest are checked for presence
	// only.
	maxBadReasons = 1 << 20
	// ackSampleEvery: every this-many-th offset of a partition keeps its ack
	// time, the input of the produced -> committed latency.
	ackSampleEvery = 8
	// maxAckSamples bounds a partition's samples: at that many, every other
	// one is dropped and the partition samples half as often from then on,
	// so the samples stay spread evenly over the run. (Kept without bound,
	// they were a tenth of the process's live heap after a minute flat out.)
	maxAckSamples = 1 << 17
)

// ackSample is 16 bytes: a run flat out keeps over a million of them, and
// a time.Time (24 bytes, with a location pointer the collector must scan)
// made them half of the verifier's memory.
type ackSample struct {
	offset int64
	atNano int64 // the ack time, Unix nanoseconds
}

func (s ackSample) at() time.Time { return time.Unix(0, s.atNano) }

// Truth is what the producers were told is in Kafka: every acknowledged
// position, good or malformed (with the reason it must be refused for),
// the generators' exact aggregates of the good events per rollup window
// and group (Summaries), and ack times of sampled offsets. Safe for
// concurrent use.
type Truth struct {
	Expected *verify.Expected
	// Summaries is the exact aggregate of the acknowledged good events per
	// window and group; nil when the run checks no summaries.
	Summaries *gen.Truth

	mu         sync.Mutex
	badReasons map[verify.Position]schema.Reason
	badUntold  int64 // malformed positions beyond maxBadReasons
	samples    map[int32]*ackSampler
	maxEventUS int64
	good, bad  int64
	lateBeyond int64
	bytes      int64
	idKeys     []uint64 // of the generators that produced: see eventIndex
}

// NewTruth returns an empty Truth.
func NewTruth() *Truth {
	return &Truth{
		Expected:   verify.NewExpected(),
		badReasons: map[verify.Position]schema.Reason{},
		samples:    map[int32]*ackSampler{},
		maxEventUS: math.MinInt64,
	}
}

// addGenerator registers a generator whose events are produced, so that
// the verifier can tell its event ids.
func (t *Truth) addGenerator(g *gen.Generator) {
	t.mu.Lock()
	if k := g.EventIDKey(); !slices.Contains(t.idKeys, k) { // markers reuse a seed
		t.idKeys = append(t.idKeys, k)
	}
	t.mu.Unlock()
}

// eventIndex numbers the event ids of the registered generators densely,
// for the verifier's check for repeated ids (nil: none registered).
func (t *Truth) eventIndex() func([]byte) (uint64, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.idKeys) == 0 {
		return nil
	}
	return gen.NewEventIDs(t.idKeys...).Index
}

// goodAcks is a batch of acknowledged good events, in the shapes the
// parts of the Truth take them.
type goodAcks struct {
	positions []verify.Position
	events    []gen.Event
	meta      []goodAck
}

type goodAck struct {
	partition int32
	// lateBeyond says the event was later than the allowed lateness when
	// it was produced: it reaches windows the aggregator may have closed
	// already.
	lateBeyond bool
	size       int
	at         time.Time
}

func (b *goodAcks) add(partition int32, offset int64, ev *gen.Event, lateBeyond bool, size int, at time.Time) {
	b.positions = append(b.positions, verify.Position{Partition: strconv.Itoa(int(partition)), Offset: offset})
	b.events = append(b.events, *ev)
	b.meta = append(b.meta, goodAck{partition: partition, lateBeyond: lateBeyond, size: size, at: at})
}

// ackGoods records a batch of acknowledged good events and empties it.
func (t *Truth) ackGoods(b *goodAcks) {
	if len(b.events) == 0 {
		return
	}
	t.Expected.AddGoods(b.positions)
	if t.Summaries != nil {
		t.Summaries.AddAll(b.events)
	}
	t.mu.Lock()
	for i, m := range b.meta {
		t.maxEventUS = max(t.maxEventUS, b.events[i].TS.UnixMicro())
		t.good++
		if m.lateBeyond {
			t.lateBeyond++
		}
		t.bytes += int64(m.size)
		if offset := b.positions[i].Offset; offset%ackSampleEvery == 0 {
			ps := t.samples[m.partition]
			if ps == nil {
				ps = &ackSampler{stride: ackSampleEvery}
				t.samples[m.partition] = ps
			}
			ps.add(offset, m.at)
		}
	}
	t.mu.Unlock()
	b.positions, b.events, b.meta = b.positions[:0], b.events[:0], b.meta[:0]
}

// ackSampler keeps the ack times of every stride-th offset of a partition.
type ackSampler struct {
	stride int64
	s      []ackSample
}

func (a *ackSampler) add(offset int64, at time.Time) {
	if offset%a.stride != 0 {
		return
	}
	a.s = append(a.s, ackSample{offset, at.UnixNano()})
	if len(a.s) >= maxAckSamples {
		a.stride *= 2
		a.s = slices.DeleteFunc(a.s, func(x ackSample) bool { return x.offset%a.stride != 0 })
	}
}

// ackBad records an acknowledged malformed record.
func (t *Truth) ackBad(partition int32, offset int64, reason schema.Reason, size int) {
	p := strconv.Itoa(int(partition))
	t.Expected.AddBad(p, offset)
	t.mu.Lock()
	if len(t.badReasons) < maxBadReasons {
		t.badReasons[verify.Position{Partition: p, Offset: offset}] = reason
	} else {
		t.badUntold++
	}
	t.bad++
	t.bytes += int64(size)
	t.mu.Unlock()
}

// Counts returns the acknowledged good and malformed records and their bytes.
func (t *Truth) Counts() (good, bad, bytes int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.good, t.bad, t.bytes
}

// LateBeyondLateness is the number of acknowledged good events that were
// produced later than the rollup's allowed lateness.
func (t *Truth) LateBeyondLateness() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.lateBeyond
}

// MaxEventTime is the latest event time acknowledged; ok is false before
// the first good event.
func (t *Truth) MaxEventTime() (time.Time, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.maxEventUS == math.MinInt64 {
		return time.Time{}, false
	}
	return time.UnixMicro(t.maxEventUS).UTC(), true
}

// partitions returns the partitions with acknowledged records.
func (t *Truth) partitions() []int32 {
	var out []int32
	for p := range t.Expected.Ends() {
		n, err := strconv.Atoi(p)
		if err == nil {
			out = append(out, int32(n))
		}
	}
	slices.Sort(out)
	return out
}

// reason is the reason the malformed record at pos must carry; ok is false
// when it is not kept.
func (t *Truth) reason(pos verify.Position) (schema.Reason, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r, ok := t.badReasons[pos]
	return r, ok
}

// ackSamples returns the sampled ack times by partition, sorted by offset.
func (t *Truth) ackSamples() map[int32][]ackSample {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[int32][]ackSample, len(t.samples))
	for p, ps := range t.samples {
		s := slices.Clone(ps.s)
		slices.SortFunc(s, func(a, b ackSample) int { return cmp.Compare(a.offset, b.offset) })
		out[p] = s
	}
	return out
}
