package aggregate

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/DataDog/sketches-go/ddsketch"
	"github.com/DataDog/sketches-go/ddsketch/mapping"
	"github.com/DataDog/sketches-go/ddsketch/pb/sketchpb"
	"github.com/DataDog/sketches-go/ddsketch/store"
)

// The compact quantile sketch encoding. A DDSketch protobuf (what summaries
// were written with before, and are still read in) writes every bin of a
// store's index range as a tagged float64, 9 bytes a bin, empty ones too: a
// 1-minute group of a few dozen latencies took about 900 bytes, and
// encoding, copying and compressing those bytes was a fifth of a pass. The
// compact encoding writes the non-empty bins only, index gaps and counts as
// varints (about 2 bytes a bin), and holds the same sketch: the same
// mapping, zero count, bins and counts.
//
// Layout: ddCompactMark; the mapping's gamma and index offset (float64
// bits, little endian); the zero count (uvarint); then the negative and the
// positive store, each the number of non-empty bins (uvarint) followed by
// each bin in ascending index order: its index (the first as a zigzag
// varint, the others as the gap from the one before, uvarint) and its count
// (uvarint). Equal sketches give equal bytes.
//
// Counts must be whole numbers up to 2^53 (every count an aggregation makes
// is: bins count values). A sketch holding another count, or of another
// mapping or store kind, is written as a protobuf instead; decodeDD reads
// both.
const ddCompactMark = 0x01 // a protobuf cannot start with it: its first byte is a tag, and field number 0 does not exist

// maxWholeCount is the largest count the compact encoding holds: float64
// counts are exact whole numbers up to it.
const maxWholeCount = 1 << 53

func wholeCount(c float64) bool { return c >= 0 && c <= maxWholeCount && c == math.Trunc(c) }

// appendDDCompact appends dd in the compact encoding; ok is false (and dst
// unchanged) for a sketch it does not hold.
func appendDDCompact(dst []byte, dd *ddsketch.DDSketch) (_ []byte, ok bool) {
	return newSketchEncoder().appendCompact(dst, dd, false)
}

// sketchEncoder writes sketches in the compact encoding, and can find a
// sketch's quantiles in the same walk of its bins. One kept by a writer
// encodes without allocating: ForEach takes a func, and the variables a
// closure would update escaped to the heap, an allocation per sketch.
type sketchEncoder struct {
	dst        []byte
	bins, prev int
	total      float64
	ok         bool
	visit      bool // hand the bins to walk as well
	walk       quantileWalk
	bin        func(index int, count float64) bool // e.takeBin, bound once
}

func newSketchEncoder() *sketchEncoder {
	e := &sketchEncoder{}
	e.bin = e.takeBin
	return e
}

// appendCompact appends dd in the compact encoding (ok false, dst
// unchanged, for a sketch it does not hold). With visit, the positive
// store's non-empty bins go to e.walk too, in ascending index order, until
// it has found every quantile.
func (e *sketchEncoder) appendCompact(dst []byte, dd *ddsketch.DDSketch, visit bool) (_ []byte, ok bool) {
	m, ok := dd.IndexMapping.(*mapping.LogarithmicMapping)
	if !ok {
		return dst, false
	}
	pos, neg := dd.GetPositiveValueStore(), dd.GetNegativeValueStore()
	if !orderedStore(pos) || !orderedStore(neg) {
		return dst, false
	}
	mp := m.ToProto()
	zero := dd.GetZeroCount()
	if mp.Interpolation != sketchpb.IndexMapping_NONE || !wholeCount(zero) {
		return dst, false
	}
	start := len(dst)
	dst = append(dst, ddCompactMark)
	dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(mp.Gamma))
	dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(mp.IndexOffset))
	dst = binary.AppendUvarint(dst, uint64(zero))
	dst, okNeg := e.appendStore(dst, neg, false)
	dst, okPos := e.appendStore(dst, pos, visit)
	if !okNeg || !okPos {
		return dst[:start], false
	}
	return dst, true
}

// appendStore appends a store's non-empty bins, in one walk (room for
// their number is kept in front, and closed up once it is known). ok is
// false when a count is not whole, or the counts ForEach shows do not add
// up to the store's total (a negative count, which ForEach hides).
func (e *sketchEncoder) appendStore(dst []byte, s store.Store, visit bool) (_ []byte, ok bool) {
	lo, _ := s.MinIndex() // 0 and 0 when empty
	hi, _ := s.MaxIndex()
	at := len(dst)
	// Bytes of the largest number of bins. A store whose counts cancel out
	// (IsEmpty, but with bins) may take more, and is refused below.
	var tmp [binary.MaxVarintLen64]byte
	room := binary.PutUvarint(tmp[:], uint64(hi-lo+1))
	e.dst = append(dst, tmp[:room]...)
	e.bins, e.prev, e.total, e.ok, e.visit = 0, 0, 0, true, visit
	s.ForEach(e.bin)
	dst, e.dst = e.dst, nil
	n := binary.PutUvarint(tmp[:], uint64(e.bins))
	if n > room {
		return dst, false
	}
	copy(dst[at:], tmp[:n])
	if n < room {
		dst = append(dst[:at+n], dst[at+room:]...)
	}
	return dst, e.ok && e.total == s.TotalCount()
}

// takeBin is appendStore's ForEach func.
func (e *sketchEncoder) takeBin(index int, count float64) bool {
	if !wholeCount(count) {
		e.ok = false
		return true
	}
	e.total += count
	if e.bins == 0 {
		e.dst = binary.AppendVarint(e.dst, int64(index))
	} else {
		e.dst = binary.AppendUvarint(e.dst, uint64(index-e.prev))
	}
	e.bins++
	e.prev = index
	e.dst = binary.AppendUvarint(e.dst, uint64(count))
	if e.visit && e.walk.bin(index, count) {
		e.visit = false
	}
	return false
}

// sameLogMapping reports whether mp is the logarithmic mapping of gamma and
// offset, exactly (what the aggregator writes is its measure's own).
func sameLogMapping(mp mapping.IndexMapping, gamma, offset float64) bool {
	lm, ok := mp.(*mapping.LogarithmicMapping)
	if !ok {
		return false
	}
	p := lm.ToProto()
	return p.Gamma == gamma && p.IndexOffset == offset && p.Interpolation == sketchpb.IndexMapping_NONE
}

var errDDCompact = errors.New("malformed compact sketch")

// decodeDDCompact reads a sketch appendDDCompact wrote (b starts with
// ddCompactMark) into a fresh sketch of the measure's mapping.
func (m *measureSpec) decodeDDCompact(b []byte) (*ddsketch.DDSketch, error) {
	r := &partialReader{b: b[1:]}
	hdr := r.bytes(16)
	if r.err != nil {
		return nil, errDDCompact
	}
	gamma := math.Float64frombits(binary.LittleEndian.Uint64(hdr))
	offset := math.Float64frombits(binary.LittleEndian.Uint64(hdr[8:]))
	if !sameLogMapping(m.mapping, gamma, offset) {
		got, err := mapping.NewLogarithmicMappingWithGamma(gamma, offset)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", errDDCompact, err)
		}
		if !got.Equals(m.mapping) {
			return nil, fmt.Errorf("sketch has relative accuracy %v, the measure %v", got.RelativeAccuracy(), m.RelativeAccuracy)
		}
	}
	// Indexes outside the mapping's range belong to no value: refused, so a
	// damaged gap cannot make a dense store allocate billions of bins.
	lo, hi := m.mapping.Index(m.mapping.MinIndexableValue()), m.mapping.Index(m.mapping.MaxIndexableValue())
	out := m.newDD()
	zero := r.uvarint()
	if zero > maxWholeCount {
		return nil, errDDCompact
	}
	if zero > 0 {
		if err := out.AddWithCount(0, float64(zero)); err != nil {
			return nil, err
		}
	}
	for _, s := range []store.Store{out.GetNegativeValueStore(), out.GetPositiveValueStore()} {
		n := r.uvarint()
		if n > uint64(len(r.b))/2 { // a bin takes at least two bytes
			return nil, errDDCompact
		}
		index := int64(0)
		for i := uint64(0); i < n; i++ {
			if i == 0 {
				index = r.varint()
			} else {
				gap := r.uvarint()
				if gap == 0 || gap > uint64(hi-lo) {
					return nil, errDDCompact
				}
				index += int64(gap)
			}
			count := r.uvarint()
			if r.err != nil || index < int64(lo) || index > int64(hi) || count == 0 || count > maxWholeCount {
				return nil, errDDCompact
			}
			s.AddWithCount(int(index), float64(count))
		}
	}
	if r.err != nil || len(r.b) != 0 {
		return nil, errDDCompact
	}
	return out, nil
}
