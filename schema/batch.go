package schema

import (
	"errors"
	"math"
	"unsafe"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"
)

// Batch accumulates decoded rows of one table as Arrow columns. It is not
// safe for concurrent use.
//
// It keeps its columns in plain Go slices and hands them to Arrow without a
// copy in NewRecord. Arrow's own builders were measured at about a third of
// the whole decode time (a capacity check, a bitmap update and a call per
// value); appending to a slice is a fraction of that.
type Batch struct {
	table  *Table
	schema *arrow.Schema
	cols   []column // table fields, then _source, _partition, _offset
	rows   int
}

// column is one Arrow column under construction.
type column struct {
	kind     fieldKind
	dt       arrow.DataType
	nullable bool
	valid    []byte // validity bitmap; nil until the first null
	nulls    int
	bits     []byte // boolean values
	i64      []int64
	f64      []float64
	offs     []int32 // string offsets, len rows+1
	data     []byte  // string bytes
}

// errBatchFull is returned when a string column would pass Arrow's 2 GiB
// limit for utf8 offsets; callers flush long before that.
var errBatchFull = errors.New("batch full: string column would exceed 2 GiB")

// NewBatch returns an empty batch for t's ArrowSchema. Its memory is managed
// by the Go runtime; mem is accepted for symmetry with Arrow builders and may
// be nil.
func NewBatch(t *Table, mem memory.Allocator) *Batch {
	_ = mem
	s := t.ArrowSchema()
	b := &Batch{table: t, schema: s, cols: make([]column, s.NumFields())}
	for i := range b.cols {
		f := s.Field(i)
		c := &b.cols[i]
		c.dt, c.nullable = f.Type, f.Nullable
		switch f.Type.ID() {
		case arrow.STRING:
			c.kind = kindString
			c.offs = []int32{0}
		case arrow.INT64:
			c.kind = kindInt64
		case arrow.FLOAT64:
			c.kind = kindFloat64
		case arrow.BOOL:
			c.kind = kindBool
		case arrow.TIMESTAMP:
			c.kind = kindTimestamp
		}
	}
	return b
}

// Table is the table the batch holds rows of.
func (b *Batch) Table() *Table { return b.table }

// Len is the number of rows appended since the last NewRecord.
func (b *Batch) Len() int { return b.rows }

// ApproxBytes is the memory the batch's buffers hold (their capacity, which
// is what is allocated: up to twice the data since slices grow by doubling).
// It costs one step per column, so it is cheap to poll.
func (b *Batch) ApproxBytes() int {
	n := 0
	for i := range b.cols {
		c := &b.cols[i]
		n += cap(c.valid) + cap(c.bits) + 8*cap(c.i64) + 8*cap(c.f64) + 4*cap(c.offs) + cap(c.data)
	}
	return n
}

// Release drops the batch's buffers. Records already returned by NewRecord
// stay valid. The batch must not be used afterwards.
func (b *Batch) Release() {
	b.cols = nil
	b.rows = 0
}

// NewRecord returns the rows appended so far as a record and empties the
// batch. The caller owns the record and must Release it. The buffers move to
// the record without a copy; the emptied batch preallocates as much as the
// record holds, since batches are usually filled to a similar size again.
func (b *Batch) NewRecord() arrow.Record {
	arrs := make([]arrow.Array, len(b.cols))
	for i := range b.cols {
		arrs[i] = b.cols[i].finish(b.rows)
	}
	rec := array.NewRecord(b.schema, arrs, int64(b.rows))
	for _, a := range arrs {
		a.Release()
	}
	b.rows = 0
	return rec
}

func (c *column) finish(rows int) arrow.Array {
	var validity *memory.Buffer
	if c.nulls > 0 {
		validity = memory.NewBufferBytes(c.valid)
	}
	var bufs []*memory.Buffer
	switch c.kind {
	case kindString:
		bufs = []*memory.Buffer{validity, memory.NewBufferBytes(sliceBytes(c.offs)), memory.NewBufferBytes(c.data)}
		nextData := cap(c.data)
		if len(c.data) > 0 {
			nextData = len(c.data)
		}
		c.offs = make([]int32, 1, rows+1)
		c.data = make([]byte, 0, nextData)
	case kindInt64, kindTimestamp:
		bufs = []*memory.Buffer{validity, memory.NewBufferBytes(sliceBytes(c.i64))}
		c.i64 = make([]int64, 0, rows)
	case kindFloat64:
		bufs = []*memory.Buffer{validity, memory.NewBufferBytes(sliceBytes(c.f64))}
		c.f64 = make([]float64, 0, rows)
	case kindBool:
		bufs = []*memory.Buffer{validity, memory.NewBufferBytes(c.bits)}
		c.bits = make([]byte, 0, (rows+7)/8)
	}
	data := array.NewData(c.dt, rows, bufs, nil, c.nulls, 0)
	arr := array.MakeFromData(data)
	data.Release()
	c.valid, c.nulls = nil, 0
	return arr
}

// sliceBytes views a slice of fixed-size numbers as bytes, which is how
// Arrow buffers hold them (little-endian, as on every platform Go runs
// Sluice on).
func sliceBytes[T int32 | int64 | float64](s []T) []byte {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), len(s)*int(unsafe.Sizeof(s[0])))
}

// appendNull marks row as null; valid bits of earlier rows are materialised
// on the first null, so columns without nulls carry no bitmap.
func (c *column) appendNull(row int) {
	if c.valid == nil {
		c.valid = make([]byte, (row+8)/8, max(64, (row+8)/8*2))
		for i := 0; i < row; i++ {
			c.valid[i>>3] |= 1 << (i & 7)
		}
	}
	for len(c.valid) <= row>>3 {
		c.valid = append(c.valid, 0)
	}
	c.nulls++
	switch c.kind {
	case kindString:
		c.offs = append(c.offs, int32(len(c.data)))
	case kindInt64, kindTimestamp:
		c.i64 = append(c.i64, 0)
	case kindFloat64:
		c.f64 = append(c.f64, 0)
	case kindBool:
		c.appendBit(row, false)
	}
}

// markValid records a non-null value at row when a bitmap exists.
func (c *column) markValid(row int) {
	if c.valid != nil {
		for len(c.valid) <= row>>3 {
			c.valid = append(c.valid, 0)
		}
		c.valid[row>>3] |= 1 << (row & 7)
	}
}

func (c *column) appendBit(row int, v bool) {
	if row&7 == 0 {
		c.bits = append(c.bits, 0)
	}
	if v {
		c.bits[row>>3] |= 1 << (row & 7)
	}
}

// fits reports whether n more string bytes keep the offsets in int32.
func (c *column) fits(n int) bool { return len(c.data)+n <= math.MaxInt32 }

func (c *column) appendString(row int, s []byte) {
	c.data = append(c.data, s...)
	c.offs = append(c.offs, int32(len(c.data)))
	c.markValid(row)
}

func (c *column) appendStringS(row int, s string) {
	c.data = append(c.data, s...)
	c.offs = append(c.offs, int32(len(c.data)))
	c.markValid(row)
}

func (c *column) appendInt(row int, v int64) {
	c.i64 = append(c.i64, v)
	c.markValid(row)
}

func (c *column) appendFloat(row int, v float64) {
	c.f64 = append(c.f64, v)
	c.markValid(row)
}

func (c *column) appendBool(row int, v bool) {
	c.appendBit(row, v)
	c.markValid(row)
}

// timestampMillis floors, so a pre-epoch instant stays in its millisecond.
func timestampMillis(micros int64) int64 {
	ms := micros / 1000
	if micros%1000 < 0 {
		ms--
	}
	return ms
}
