package aggregate

import (
	"bytes"
	"fmt"
	"math"
	"slices"

	"github.com/DataDog/sketches-go/ddsketch"
	"github.com/DataDog/sketches-go/ddsketch/mapping"
	"github.com/DataDog/sketches-go/ddsketch/pb/sketchpb"
	"github.com/DataDog/sketches-go/ddsketch/store"
	"github.com/axiomhq/hyperloglog"
	metro "github.com/dgryski/go-metro"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/sluicehq/sluice/schema"
)

// hllSeed is the seed axiomhq/hyperloglog's Insert hashes with (format
// version 2 pins it): hashing ourselves with the same function keeps our
// sketches mergeable with ones built by Insert elsewhere.
const hllSeed = 1337

// MeasureState is the mergeable state of one measure in one group: enough
// to produce the measure's summary columns and to merge with another
// group's state into a coarser window. Methods are not safe for concurrent
// use (reading a distinct estimate compacts the sketch).
type MeasureState struct {
	n      int64 // rows (count) or non-null values seen (other kinds)
	isum   int64 // sum of an int64 field
	fsum   *xsum // exact sum of a float64 field
	lo, hi uint64
	hll    *hyperloglog.Sketch
	dd     *ddsketch.DDSketch
}

// measureSpec is a rollup measure with what the hot path needs resolved.
type measureSpec struct {
	*schema.Measure
	typ     schema.Type
	mapping mapping.IndexMapping // quantiles
}

func newMeasureSpecs(t *schema.Table) ([]measureSpec, error) {
	if t == nil || t.Rollup == nil {
		return nil, fmt.Errorf("table has no rollup")
	}
	specs := make([]measureSpec, len(t.Rollup.Measures))
	for i := range t.Rollup.Measures {
		m := &t.Rollup.Measures[i]
		specs[i] = measureSpec{Measure: m, typ: m.FieldType()}
		if m.Kind == schema.KindQuantiles {
			mp, err := mapping.NewLogarithmicMapping(m.RelativeAccuracy)
			if err != nil {
				return nil, fmt.Errorf("measure %s: %w", m.Name, err)
			}
			specs[i].mapping = mp
		}
	}
	return specs, nil
}

func (m *measureSpec) isFloat() bool { return m.typ == schema.TypeFloat64 }

// init prepares an empty state. Sketches are allocated up front: every row
// updates them, and a nil test on each update would cost more than
// allocating them. An exact float sum is allocated at its first value other
// than ±0 instead (addFloat): most groups never need theirs.
func (m *measureSpec) init(s *MeasureState) {
	switch m.Kind {
	case schema.KindDistinct:
		s.hll, _ = hyperloglog.NewSketch(uint8(m.Precision), true) // precision validated by schema
	case schema.KindQuantiles:
		s.dd = m.newDD()
	}
}

// newDD returns an empty quantile sketch of the measure. Its stores keep
// values of count one as a list of bin indexes, and turn a range of 32
// bins into an array once enough values fall in it: a group of a few
// dozen values takes a few hundred bytes, where a dense store allocated,
// and grew, an array over the whole index range its values span (about
// 2 KB a group, a third of a pass's allocations). Both are exact: the
// same sketch, bin for bin.
func (m *measureSpec) newDD() *ddsketch.DDSketch {
	return ddsketch.NewDDSketch(m.mapping, store.NewBufferedPaginatedStore(), store.NewBufferedPaginatedStore())
}

// orderedStore reports whether s's ForEach visits the non-empty bins by
// ascending index, each once: the stores this package makes, and the
// dense stores of sketches decoded before.
func orderedStore(s store.Store) bool {
	switch s.(type) {
	case *store.DenseStore, *store.BufferedPaginatedStore:
		return true
	}
	return false
}

// less orders two values of the measure's field: int64 and timestamps as
// signed integers, floats by IEEE order with -0 below +0 and NaN never
// chosen, so min and max do not depend on input order.
func (m *measureSpec) less(a, b uint64) bool {
	if !m.isFloat() {
		return int64(a) < int64(b)
	}
	fa, fb := math.Float64frombits(a), math.Float64frombits(b)
	if fa == fb {
		return a>>63 > b>>63 // -0 < +0
	}
	return fa < fb
}

func (m *measureSpec) addMinMax(s *MeasureState, v uint64) {
	if m.isFloat() && math.IsNaN(math.Float64frombits(v)) {
		return
	}
	if s.n == 0 {
		s.lo, s.hi = v, v
	} else {
		if m.less(v, s.lo) {
			s.lo = v
		}
		if m.less(s.hi, v) {
			s.hi = v
		}
	}
	s.n++
}

// merge folds o into s.
func (m *measureSpec) merge(s, o *MeasureState) error {
	switch m.Kind {
	case schema.KindCount:
		s.n += o.n
	case schema.KindSum, schema.KindAvg:
		if m.isFloat() {
			s.mergeSum(o)
		} else {
			sum, overflow := addInt64(s.isum, o.isum)
			if overflow {
				return fmt.Errorf("measure %s: int64 sum overflows", m.Name)
			}
			s.isum = sum
		}
		s.n += o.n
	case schema.KindMin, schema.KindMax:
		if o.n > 0 {
			if s.n == 0 {
				s.lo, s.hi = o.lo, o.hi
			} else {
				if m.less(o.lo, s.lo) {
					s.lo = o.lo
				}
				if m.less(s.hi, o.hi) {
					s.hi = o.hi
				}
			}
			s.n += o.n
		}
	case schema.KindDistinct:
		if err := s.hll.Merge(o.hll); err != nil {
			return fmt.Errorf("measure %s: %w", m.Name, err)
		}
		s.n += o.n
	case schema.KindQuantiles:
		if err := s.dd.MergeWith(o.dd); err != nil {
			return fmt.Errorf("measure %s: %w", m.Name, err)
		}
		s.n += o.n
	}
	return nil
}

func addInt64(a, b int64) (int64, bool) {
	s := a + b
	return s, (a >= 0) == (b >= 0) && (s >= 0) != (a >= 0)
}

// Count is the number of rows (kind count) or of non-null input values
// (avg; for sum, min, max, distinct and quantiles only whether it is 0 is
// kept across a summary file).
func (s *MeasureState) Count() int64 { return s.n }

// SumInt is the sum of an int64 field (kinds sum and avg).
func (s *MeasureState) SumInt() int64 { return s.isum }

// SumFloat is the exact sum of a float64 field, correctly rounded.
func (s *MeasureState) SumFloat() float64 { return s.fsum.float64() }

// MinMaxInt returns the smallest and largest value of an int64 or
// timestamp field (in the field's unit); ok is false when the group had no
// non-null value.
func (s *MeasureState) MinMaxInt() (lo, hi int64, ok bool) {
	return int64(s.lo), int64(s.hi), s.n > 0
}

// MinMaxFloat is MinMaxInt for a float64 field.
func (s *MeasureState) MinMaxFloat() (lo, hi float64, ok bool) {
	return math.Float64frombits(s.lo), math.Float64frombits(s.hi), s.n > 0
}

// Distinct is the HyperLogLog estimate of distinct non-null values.
func (s *MeasureState) Distinct() uint64 {
	if s.hll == nil {
		return 0
	}
	return s.hll.Estimate()
}

// Quantile is the DDSketch estimate of quantile q; ok is false when the
// group had no value.
func (s *MeasureState) Quantile(q float64) (float64, bool) {
	if s.dd == nil || s.dd.IsEmpty() {
		return 0, false
	}
	v, err := s.dd.GetValueAtQuantile(q)
	return v, err == nil
}

// HLL is the distinct-count sketch (nil for other kinds).
func (s *MeasureState) HLL() *hyperloglog.Sketch { return s.hll }

// Sketch is the quantile sketch (nil for other kinds).
func (s *MeasureState) Sketch() *ddsketch.DDSketch { return s.dd }

// encodeHLL returns the sketch in axiomhq's binary format, canonically:
// Estimate first folds the sparse buffer into the sorted list and turns a
// sparse sketch past 2^p entries dense, so the bytes depend only on the set
// of hashes inserted, not on insertion or merge order.
func encodeHLL(sk *hyperloglog.Sketch) (est uint64, b []byte, err error) {
	est = sk.Estimate()
	b, err = sk.MarshalBinary()
	return est, b, err
}

func decodeHLL(b []byte, precision int) (*hyperloglog.Sketch, error) {
	sk := new(hyperloglog.Sketch)
	if err := sk.UnmarshalBinary(b); err != nil {
		return nil, err
	}
	// Merge needs equal precisions; a file from a table whose precision
	// changed is unusable for merging and must be recomputed.
	probe, _ := hyperloglog.NewSketch(uint8(precision), true)
	if err := probe.Merge(sk); err != nil {
		return nil, err
	}
	return probe, nil
}

// encodeDD returns the sketch in the compact encoding (appendDDCompact),
// or, for a sketch that encoding does not hold, the DDSketch protobuf.
// Either way equal contents give equal bytes: the compact encoding writes
// the non-empty bins only, and the protobuf of dense stores their
// populated index range.
func encodeDD(dd *ddsketch.DDSketch) []byte {
	return appendDD(nil, dd)
}

// appendDD appends encodeDD's bytes to dst.
func appendDD(dst []byte, dd *ddsketch.DDSketch) []byte {
	if b, ok := appendDDCompact(dst, dd); ok {
		return b
	}
	if b, ok := appendDDProto(dst, dd); ok {
		return b
	}
	buf := bytes.NewBuffer(dst)
	dd.EncodeProto(buf)
	return buf.Bytes()
}

// appendDDProto appends the bytes dd.EncodeProto writes, for sketches of a
// logarithmic mapping over dense stores that the compact encoding does not
// hold (a count that is not a whole number), into one allocation:
// EncodeProto goes through nested growing buffers and a write per bin. ok
// is false for any other sketch, left to EncodeProto.
func appendDDProto(dst []byte, dd *ddsketch.DDSketch) (_ []byte, ok bool) {
	m, ok := dd.IndexMapping.(*mapping.LogarithmicMapping)
	if !ok {
		return dst, false
	}
	pos, ok := dd.GetPositiveValueStore().(*store.DenseStore)
	if !ok {
		return dst, false
	}
	neg, ok := dd.GetNegativeValueStore().(*store.DenseStore)
	if !ok {
		return dst, false
	}
	mp := m.ToProto()
	const mappingLen = 2 * (1 + 8) // gamma and index offset; the interpolation NONE is the default, not written
	if mp.Interpolation != sketchpb.IndexMapping_NONE {
		return dst, false
	}
	posLen, posBins := denseStoreProtoLen(pos)
	negLen, negBins := denseStoreProtoLen(neg)
	dst = slices.Grow(dst, 2+mappingLen+1+8+1+protowire.SizeVarint(uint64(negLen))+negLen+1+protowire.SizeVarint(uint64(posLen))+posLen)
	// The fields in EncodeProto's order: mapping (1), zero count (4),
	// negative values (3), positive values (2).
	dst = protowire.AppendTag(dst, 1, protowire.BytesType)
	dst = protowire.AppendVarint(dst, mappingLen)
	dst = protowire.AppendTag(dst, 1, protowire.Fixed64Type)
	dst = protowire.AppendFixed64(dst, math.Float64bits(mp.Gamma))
	dst = protowire.AppendTag(dst, 2, protowire.Fixed64Type)
	dst = protowire.AppendFixed64(dst, math.Float64bits(mp.IndexOffset))
	dst = protowire.AppendTag(dst, 4, protowire.Fixed64Type)
	dst = protowire.AppendFixed64(dst, math.Float64bits(dd.GetZeroCount()))
	start := len(dst)
	dst, okNeg := appendDenseStoreProto(dst, 3, neg, negLen, negBins)
	dst, okPos := appendDenseStoreProto(dst, 2, pos, posLen, posBins)
	if !okNeg || !okPos {
		return dst[:start], false
	}
	return dst, true
}

// denseStoreProtoLen is the length of s's Store message as
// DenseStore.EncodeProto writes it: every bin of the populated index range
// (field 2, each tagged), then the range's first index (field 3, zigzag);
// nothing for an empty store.
func denseStoreProtoLen(s *store.DenseStore) (n, bins int) {
	if s.IsEmpty() {
		return 0, 0
	}
	lo, _ := s.MinIndex()
	hi, _ := s.MaxIndex()
	bins = hi - lo + 1
	return bins*(1+8) + 1 + protowire.SizeVarint(protowire.EncodeZigZag(int64(int32(lo)))), bins
}

// appendDenseStoreProto appends s's Store message as field. ok is false
// when s holds a count ForEach does not show (negative, or not summing to
// the store's total): never in sketches of whole positive counts.
func appendDenseStoreProto(dst []byte, field protowire.Number, s *store.DenseStore, n, bins int) (_ []byte, ok bool) {
	dst = protowire.AppendTag(dst, field, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(n))
	if bins == 0 {
		return dst, true
	}
	lo, _ := s.MinIndex()
	next := lo // the next index to write: bins ForEach skips (empty ones) are written as 0
	var total float64
	s.ForEach(func(index int, count float64) bool {
		total += count
		for ; next < index; next++ {
			dst = protowire.AppendTag(dst, 2, protowire.Fixed64Type)
			dst = protowire.AppendFixed64(dst, 0)
		}
		dst = protowire.AppendTag(dst, 2, protowire.Fixed64Type)
		dst = protowire.AppendFixed64(dst, math.Float64bits(count))
		next++
		return false
	})
	for ; next < lo+bins; next++ { // not reached with positive counts: the last bin holds one
		dst = protowire.AppendTag(dst, 2, protowire.Fixed64Type)
		dst = protowire.AppendFixed64(dst, 0)
	}
	dst = protowire.AppendTag(dst, 3, protowire.VarintType)
	return protowire.AppendVarint(dst, protowire.EncodeZigZag(int64(int32(lo)))), total == s.TotalCount()
}

// decodeDD reads a sketch encodeDD wrote, in either encoding (summaries
// written before the compact encoding hold protobufs), into a fresh sketch
// of the measure's mapping.
func (m *measureSpec) decodeDD(b []byte) (*ddsketch.DDSketch, error) {
	if len(b) > 0 && b[0] == ddCompactMark {
		return m.decodeDDCompact(b)
	}
	var pb sketchpb.DDSketch
	if err := proto.Unmarshal(b, &pb); err != nil {
		return nil, err
	}
	dd, err := ddsketch.FromProtoWithStoreProvider(&pb, store.DenseStoreConstructor)
	if err != nil {
		return nil, err
	}
	if !dd.IndexMapping.Equals(m.mapping) {
		return nil, fmt.Errorf("sketch has relative accuracy %v, the measure %v", dd.RelativeAccuracy(), m.RelativeAccuracy)
	}
	out := m.newDD()
	if err := out.MergeWith(dd); err != nil {
		return nil, err
	}
	return out, nil
}

// hashBytes is the distinct-count hash of a string value.
func hashBytes(b []byte) uint64 { return metro.Hash64(b, hllSeed) }

// hashUint64 is the distinct-count hash of an 8-byte value (int64,
// timestamp, float64 bits) in little-endian order.
func hashUint64(v uint64) uint64 {
	var b [8]byte
	for i := range b {
		b[i] = byte(v >> (8 * i))
	}
	return metro.Hash64(b[:], hllSeed)
}

// quantiles sets out[i] to the sketch's estimate of quantile qs[i], what
// Quantile gives, bit for bit, or NaN where Quantile gives no value (a
// quantile outside [0, 1]); ok is false when the group had no value. The
// ranks that fall in the positive store, all of them for sketches of
// positive values, are found in one walk of its bins instead of one walk
// per quantile.
func (s *MeasureState) quantiles(qs, out []float64) (ok bool) {
	var w quantileWalk
	ok, walk := w.start(s, qs, out)
	if walk {
		pos := s.dd.GetPositiveValueStore()
		pos.ForEach(func(index int, c float64) bool { return w.bin(index, c) })
		w.finish(pos)
	}
	return ok
}

// quantileWalk finds quantiles' keys in the positive store of a sketch
// while something else walks its bins (bin, in ascending index order, then
// finish): GetValueAtQuantile's results, in one walk for all of them.
type quantileWalk struct {
	dd      *ddsketch.DDSketch
	out     []float64
	pending [maxWalkQuantiles]int // indexes into out, by ascending rank
	ranks   [maxWalkQuantiles]float64
	np      int
	next    int
	n       float64 // the running count
}

// start sets the quantiles whose ranks are not in the positive store
// (all of them, the slow way, for stores not walked in index order or
// too many quantiles). ok is false when the sketch is empty; walk says
// whether bins must be fed to bin, then finish called.
func (w *quantileWalk) start(s *MeasureState, qs, out []float64) (ok, walk bool) {
	dd := s.dd
	if dd == nil || dd.IsEmpty() {
		return false, false
	}
	if !orderedStore(dd.GetPositiveValueStore()) || len(qs) > maxWalkQuantiles {
		for i, q := range qs {
			v, ok := s.Quantile(q)
			if !ok {
				v = math.NaN()
			}
			out[i] = v
		}
		return true, false
	}
	*w = quantileWalk{dd: dd, out: out}
	// As GetValueAtQuantile: the rank, then the negative store, the zero
	// bin, or the positive store.
	count := dd.GetCount()
	negCount := dd.GetNegativeValueStore().TotalCount()
	zero := dd.GetZeroCount()
	for i, q := range qs {
		if q < 0 || q > 1 {
			out[i] = math.NaN()
			continue
		}
		rank := float64(q * (count - 1))
		switch {
		case rank < negCount:
			out[i] = -dd.Value(dd.GetNegativeValueStore().KeyAtRank(negCount - 1 - rank))
		case rank < zero+negCount:
			out[i] = 0
		default:
			r := max(rank-zero-negCount, 0) // KeyAtRank's floor
			j := w.np
			for ; j > 0 && w.ranks[j-1] > r; j-- {
				w.ranks[j], w.pending[j] = w.ranks[j-1], w.pending[j-1]
			}
			w.ranks[j], w.pending[j] = r, i
			w.np++
		}
	}
	return true, true
}

// bin takes the positive store's next non-empty bin; it reports whether
// every key is found. KeyAtRank: the first bin where the running count
// passes the rank (empty bins, which ForEach skips, never are).
func (w *quantileWalk) bin(index int, c float64) (done bool) {
	w.n += c
	for ; w.next < w.np && w.n > w.ranks[w.next]; w.next++ {
		w.out[w.pending[w.next]] = w.dd.Value(index)
	}
	return w.next == w.np
}

// finish sets the keys of ranks past the last bin: KeyAtRank's largest
// index.
func (w *quantileWalk) finish(pos store.Store) {
	if w.next < w.np {
		hi, _ := pos.MaxIndex()
		for ; w.next < w.np; w.next++ {
			w.out[w.pending[w.next]] = w.dd.Value(hi)
		}
	}
}

// appendSketchAndQuantiles is appendDD and quantiles together (ok false,
// nothing written, when the group had no value): for a sketch in the
// compact encoding, the walk that encodes the positive store's bins finds
// the quantiles too.
func (s *MeasureState) appendSketchAndQuantiles(e *sketchEncoder, dst []byte, qs, out []float64) (_ []byte, ok bool) {
	ok, walk := e.walk.start(s, qs, out)
	if !ok {
		return dst, false
	}
	if walk {
		if b, done := e.appendCompact(dst, s.dd, true); done {
			e.walk.finish(s.dd.GetPositiveValueStore())
			return b, true
		}
		s.quantiles(qs, out) // the walk stopped at a bin it could not encode
	}
	return appendDD(dst, s.dd), true
}

// maxWalkQuantiles bounds the quantiles taken in one walk (their ranks are
// kept on the stack); more go one by one.
const maxWalkQuantiles = 32
