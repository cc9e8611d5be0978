package aggregate

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/sluicehq/sluice/schema"
)

// A partial is a summary's mergeable state in a compact binary form, for
// state that only Sluice reads back (a batch run's per-split results): no
// Parquet pages, no compression and none of the derived columns (averages,
// quantile and distinct estimates) a summary file carries for its readers.
// Writing one costs less than WriteSummary, and reading it back gives
// the same states, so merging read-back partials gives the summary that
// merging the originals gives.
//
// Layout: the magic, then one zstd frame of the rollup's shape (so a
// partial of another rollup is refused, not misread), the window and the
// rows (window start as a delta from the previous row's, dimension values,
// row count, each measure's state), then a CRC-32C of what the frame holds.
// The frame is compressed at zstd's fastest level: sketches (dense
// distinct-count registers, quantile bins) are mostly zeros, and written
// raw a partial was ten to forty times the size of the summary file.
const partialMagic = "SLUICEP1"

var (
	crcTable = crc32.MakeTable(crc32.Castagnoli)
	// partialZstd and partialUnzstd are shared: EncodeAll and DecodeAll are
	// safe for concurrent use and reuse their state.
	partialZstd, _   = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	partialUnzstd, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(1<<32))
)

// rollupShape describes what a partial's states depend on: dimension types
// and each measure's kind, type and sketch parameters.
func (l *summaryLayout) rollupShape() string {
	var b strings.Builder
	for _, fi := range l.t.Rollup.DimensionIndexes() {
		f := &l.t.Fields[fi]
		fmt.Fprintf(&b, "d:%s:%s:%v;", f.Name, f.Type, f.Nullable)
	}
	for i := range l.specs {
		m := &l.specs[i]
		fmt.Fprintf(&b, "m:%s:%s:%s:%d:%g;", m.Name, m.Kind, m.typ, m.Precision, m.RelativeAccuracy)
	}
	return b.String()
}

// AppendPartial appends s as a partial to dst. Like WriteSummary, it reads
// (and so compacts) the distinct-count sketches: s must not be in use by
// another goroutine.
func AppendPartial(dst []byte, t *schema.Table, s *Summary) ([]byte, error) {
	l, err := newLayout(t)
	if err != nil {
		return dst, fmt.Errorf("write partial: %w", err)
	}
	if s == nil {
		return dst, errors.New("write partial: nil summary")
	}
	rows := s.Rows
	if !slices.IsSortedFunc(rows, func(a, b Row) int { return compareRows(&a, &b) }) {
		tmp := Summary{Rows: slices.Clone(rows)}
		tmp.sort()
		rows = tmp.Rows
	}
	dst = append(dst, partialMagic...)
	out := dst
	// Room for the rows' states; a group's sketches take a few hundred bytes.
	dst = make([]byte, 0, 64+256*len(rows))
	shape := l.rollupShape()
	dst = binary.AppendUvarint(dst, uint64(len(shape)))
	dst = append(dst, shape...)
	dst = binary.AppendVarint(dst, s.Window.Microseconds())
	dst = binary.AppendUvarint(dst, uint64(len(rows)))
	prev := int64(0)
	for i := range rows {
		r := &rows[i]
		if err := l.checkRow(r); err != nil {
			return dst, fmt.Errorf("write partial for table %s: row %d: %w", t.Name, i, err)
		}
		dst = binary.AppendVarint(dst, r.Start-prev)
		prev = r.Start
		for _, v := range r.Dims {
			switch x := v.(type) {
			case nil:
				dst = append(dst, 0)
			case string:
				dst = append(dst, 1)
				dst = binary.AppendUvarint(dst, uint64(len(x)))
				dst = append(dst, x...)
			case int64:
				dst = append(dst, 1)
				dst = binary.AppendVarint(dst, x)
			case bool:
				dst = append(dst, 1)
				if x {
					dst = append(dst, 1)
				} else {
					dst = append(dst, 0)
				}
			}
		}
		dst = binary.AppendVarint(dst, r.N)
		for mi := range l.specs {
			if dst, err = l.specs[mi].appendState(dst, &r.M[mi]); err != nil {
				return dst, fmt.Errorf("write partial for table %s: row %d: measure %s: %w", t.Name, i, l.specs[mi].Name, err)
			}
		}
	}
	out = partialZstd.EncodeAll(dst, out)
	return binary.LittleEndian.AppendUint32(out, crc32.Checksum(dst, crcTable)), nil
}

// appendState appends the state of a measure of this spec.
func (m *measureSpec) appendState(dst []byte, s *MeasureState) ([]byte, error) {
	dst = binary.AppendVarint(dst, s.n)
	switch m.Kind {
	case schema.KindSum, schema.KindAvg:
		if m.isFloat() {
			parts := s.fsum.parts()
			dst = binary.AppendUvarint(dst, uint64(len(parts)))
			dst = appendParts(dst, parts)
		} else {
			dst = binary.AppendVarint(dst, s.isum)
		}
	case schema.KindMin, schema.KindMax:
		dst = binary.AppendUvarint(dst, s.lo)
		dst = binary.AppendUvarint(dst, s.hi)
	case schema.KindDistinct:
		// Estimate first: it folds the sparse buffer in, as for a summary file.
		s.hll.Estimate()
		at := len(dst)
		dst = append(dst, 0, 0, 0, 0)
		var err error
		if dst, err = s.hll.AppendBinary(dst); err != nil {
			return dst, err
		}
		binary.LittleEndian.PutUint32(dst[at:], uint32(len(dst)-at-4))
	case schema.KindQuantiles:
		at := len(dst)
		dst = append(dst, 0, 0, 0, 0)
		if !s.dd.IsEmpty() {
			dst = appendDD(dst, s.dd)
		}
		binary.LittleEndian.PutUint32(dst[at:], uint32(len(dst)-at-4))
	}
	return dst, nil
}

// sized reads a length-prefixed byte string (the sketches).
func (r *partialReader) sized() []byte {
	n := r.bytes(4)
	if n == nil {
		return nil
	}
	return r.bytes(uint64(binary.LittleEndian.Uint32(n)))
}

// partialReader reads a partial's fields, remembering the first error.
type partialReader struct {
	b   []byte
	err error
}

var errPartialShort = errors.New("partial is cut short")

func (r *partialReader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail(errPartialShort)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *partialReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail(errPartialShort)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *partialReader) byte() byte {
	if len(r.b) == 0 {
		r.fail(errPartialShort)
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *partialReader) bytes(n uint64) []byte {
	if n > uint64(len(r.b)) {
		r.fail(errPartialShort)
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *partialReader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
	r.b = nil
}

// readState reads a state appendState wrote into s, an initialised state
// of this spec.
func (m *measureSpec) readState(r *partialReader, s *MeasureState) error {
	s.n = r.varint()
	switch m.Kind {
	case schema.KindSum, schema.KindAvg:
		if m.isFloat() {
			n := r.uvarint()
			if n > uint64(len(r.b))/8 {
				return errPartialShort
			}
			return s.addSumParts(r.bytes(8 * n))
		}
		s.isum = r.varint()
	case schema.KindMin, schema.KindMax:
		s.lo, s.hi = r.uvarint(), r.uvarint()
	case schema.KindDistinct:
		b := r.sized()
		if r.err != nil {
			return r.err
		}
		sk, err := decodeHLL(b, m.Precision)
		if err != nil {
			return err
		}
		s.hll = sk
	case schema.KindQuantiles:
		b := r.sized()
		if r.err != nil || len(b) == 0 {
			return r.err
		}
		dd, err := m.decodeDD(b)
		if err != nil {
			return err
		}
		s.dd = dd
	}
	return r.err
}

// IsPartial reports whether b starts like a partial (AppendPartial's
// output) rather than, say, a summary file.
func IsPartial(b []byte) bool { return bytes.HasPrefix(b, []byte(partialMagic)) }

// ReadPartial reads a partial written by AppendPartial for t's rollup. The
// summary's states are its own (nothing refers to b).
func ReadPartial(b []byte, t *schema.Table) (*Summary, error) {
	l, err := newLayout(t)
	if err != nil {
		return nil, fmt.Errorf("read partial: %w", err)
	}
	fail := func(err error) (*Summary, error) {
		return nil, fmt.Errorf("read partial for table %s: %w", t.Name, err)
	}
	if !IsPartial(b) || len(b) < len(partialMagic)+4 {
		return fail(errors.New("not a partial"))
	}
	body, err := partialUnzstd.DecodeAll(b[len(partialMagic):len(b)-4], nil)
	if err != nil {
		return fail(err)
	}
	if crc32.Checksum(body, crcTable) != binary.LittleEndian.Uint32(b[len(b)-4:]) {
		return fail(errors.New("checksum mismatch"))
	}
	r := &partialReader{b: body}
	if shape := string(r.bytes(r.uvarint())); r.err == nil && shape != l.rollupShape() {
		return fail(errors.New("written for another rollup shape"))
	}
	s := &Summary{Window: time.Duration(r.varint()) * time.Microsecond}
	wus := s.Window.Microseconds()
	n := r.uvarint()
	if r.err != nil {
		return fail(r.err)
	}
	if wus <= 0 || n > uint64(len(r.b)) { // a row takes at least a byte
		return fail(fmt.Errorf("window %s, %d rows in %d bytes", s.Window, n, len(r.b)))
	}
	dimFields := l.t.Rollup.DimensionIndexes()
	s.Rows = make([]Row, n)
	prev := int64(0)
	for i := range s.Rows {
		row := l.newRow()
		row.Start = prev + r.varint()
		prev = row.Start
		row.End = row.Start + wus
		for d, fi := range dimFields {
			f := &l.t.Fields[fi]
			if r.byte() == 0 {
				if !f.Nullable {
					r.fail(fmt.Errorf("NULL in dimension %s, which is not nullable", f.Name))
				}
				continue
			}
			switch f.Type {
			case schema.TypeString:
				row.Dims[d] = string(r.bytes(r.uvarint()))
			case schema.TypeInt64:
				row.Dims[d] = r.varint()
			case schema.TypeBool:
				row.Dims[d] = r.byte() == 1
			}
		}
		row.N = r.varint()
		for mi := range l.specs {
			if err := l.specs[mi].readState(r, &row.M[mi]); err != nil {
				r.fail(fmt.Errorf("measure %s: %w", l.specs[mi].Name, err))
			}
		}
		if r.err != nil {
			return fail(fmt.Errorf("row %d: %w", i, r.err))
		}
		if row.Start%wus != 0 || (i > 0 && compareRows(&s.Rows[i-1], &row) >= 0) {
			return fail(fmt.Errorf("row %d: window start %d unaligned or out of order", i, row.Start))
		}
		s.Rows[i] = row
	}
	if len(r.b) != 0 {
		return fail(fmt.Errorf("%d bytes after the last row", len(r.b)))
	}
	return s, nil
}
