package schema

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"sync"
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
	// keep, when not nil, says which of cols are kept (see Project).
	keep []bool
	// fieldCols are the table fields' columns that are kept, in order:
	// every field unless the batch is projected.
	fieldCols []int
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
	b := &Batch{table: t, schema: s, cols: make([]column, s.NumFields()), fieldCols: make([]int, len(t.Fields))}
	for i := range b.fieldCols {
		b.fieldCols[i] = i
	}
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

// Project limits the columns the batch keeps, and its records carry, to the
// named ones (table fields or metadata columns), in the table's order. Rows
// are still decoded and validated whole, so a record the full batch refuses
// is refused here too; only the copying of the other columns is saved. It
// is for a consumer that reads a few columns: the batch mapper folds records
// straight into an aggregator, which reads the rollup's fields only. Call it
// on an empty batch.
func (b *Batch) Project(names ...string) error {
	if b.rows > 0 {
		return errors.New("project: the batch already holds rows")
	}
	full := b.table.ArrowSchema()
	keep := make([]bool, full.NumFields())
	for _, n := range names {
		idx := full.FieldIndices(n)
		if len(idx) == 0 {
			return fmt.Errorf("project: table %s has no column %q", b.table.Name, n)
		}
		keep[idx[0]] = true
	}
	var fields []arrow.Field
	b.fieldCols = b.fieldCols[:0]
	for i, k := range keep {
		if k {
			fields = append(fields, full.Field(i))
			if i < len(b.table.Fields) {
				b.fieldCols = append(b.fieldCols, i)
			}
		}
	}
	md := full.Metadata()
	b.schema, b.keep = arrow.NewSchema(fields, &md), keep
	return nil
}

// kept reports whether column i is kept (see Project).
func (b *Batch) kept(i int) bool { return b.keep == nil || b.keep[i] }

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
	arrs := make([]arrow.Array, 0, b.schema.NumFields())
	for i := range b.cols {
		if b.kept(i) {
			arrs = append(arrs, b.cols[i].finish(b.rows))
		}
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
		c.offs = append(int32Bufs.take(rows+1), 0)
		c.data = byteBufs.take(nextData)
	case kindInt64, kindTimestamp:
		bufs = []*memory.Buffer{validity, memory.NewBufferBytes(sliceBytes(c.i64))}
		c.i64 = int64Bufs.take(rows)
	case kindFloat64:
		bufs = []*memory.Buffer{validity, memory.NewBufferBytes(sliceBytes(c.f64))}
		c.f64 = float64Bufs.take(rows)
	case kindBool:
		bufs = []*memory.Buffer{validity, memory.NewBufferBytes(c.bits)}
		c.bits = byteBufs.take((rows + 7) / 8)
	}
	data := array.NewData(c.dt, rows, bufs, nil, c.nulls, 0)
	arr := array.MakeFromData(data)
	data.Release()
	c.valid, c.nulls = nil, 0
	return arr
}

// Column buffers given back by RecycleRecord, for the next batches to fill.
// A batch that is flushed, encoded and dropped over and over (the ingest
// path) otherwise allocates every column anew for each flush: the runtime
// zeroes each large allocation, the garbage collector runs more often, and
// a buffer preallocated from the previous flush's size still grows by
// doubling when the next flush is larger.
var (
	byteBufs    bufPool[byte]  // string data, boolean bits
	int32Bufs   bufPool[int32] // string offsets
	int64Bufs   bufPool[int64] // int64 and timestamp values
	float64Bufs bufPool[float64]
)

// bufPool keeps slices by capacity class: class k holds capacities in
// [2^k, 2^(k+1)), so a column of a few bytes a row never holds on to a
// buffer sized for one of many, and a slice taken is at most twice what
// was asked for (as growing by doubling gives). It is a plain free list
// rather than a sync.Pool: the ingester collects garbage several times a
// second under its memory limit, which emptied a sync.Pool before the
// next flush came for its buffers. maxFreePerClass bounds what it keeps.
type bufPool[T byte | int32 | int64 | float64] struct {
	mu      sync.Mutex
	classes [48][][]T
	held    int // bytes in the free slices
}

// maxFreePerClass is how many free slices a capacity class keeps, and
// maxFreeBytes how many bytes a pool keeps in all: enough for the
// partitions of a writer to hand their buffers on, and a bound on what a
// pool holds once nobody takes from it any more (after a large batch job,
// say), which a sync.Pool would have given back.
const (
	maxFreePerClass = 4
	maxFreeBytes    = 32 << 20
)

// take returns an empty slice with room for at least n values, a recycled
// one when the pool holds one.
func (bp *bufPool[T]) take(n int) []T {
	if n <= 0 {
		return nil
	}
	k := bits.Len(uint(n - 1)) // 2^k >= n
	if k >= len(bp.classes) {
		return make([]T, 0, n)
	}
	bp.mu.Lock()
	if free := bp.classes[k]; len(free) > 0 {
		s := free[len(free)-1]
		free[len(free)-1] = nil
		bp.classes[k] = free[:len(free)-1]
		bp.held -= sliceSize(s)
		bp.mu.Unlock()
		return s[:0]
	}
	bp.mu.Unlock()
	return make([]T, 0, 1<<k)
}

// grow returns s with room for extra more values, at least doubled, in a
// slice from the pool; s goes back to the pool. A column grows through it
// so that the buffers it outgrows are used again rather than collected.
func (bp *bufPool[T]) grow(s []T, extra int) []T {
	t := bp.take(max(len(s)+extra, 2*cap(s), 64))
	t = append(t, s...)
	bp.put(s)
	return t
}

func (bp *bufPool[T]) put(s []T) {
	k := bits.Len(uint(cap(s))) - 1
	if k < 0 || k >= len(bp.classes) {
		return
	}
	size := sliceSize(s)
	bp.mu.Lock()
	if len(bp.classes[k]) < maxFreePerClass && bp.held+size <= maxFreeBytes {
		bp.classes[k] = append(bp.classes[k], s[:0])
		bp.held += size
	}
	bp.mu.Unlock()
}

// sliceSize is the bytes s's backing array holds.
func sliceSize[T byte | int32 | int64 | float64](s []T) int {
	var v T
	return cap(s) * int(unsafe.Sizeof(v))
}

// RecycleRecord releases rec, a record returned by Batch.NewRecord, and
// hands its buffers to the batches that fill next. It is for a caller that
// holds the only reference to rec: no array of it (nor a slice of one, nor
// a value read from a string column) may be used afterwards.
func RecycleRecord(rec arrow.Record) {
	for _, col := range rec.Columns() {
		bufs := col.Data().Buffers()
		switch col.DataType().ID() {
		case arrow.STRING:
			if len(bufs) > 2 && bufs[1] != nil && bufs[2] != nil {
				int32Bufs.put(bytesAs[int32](bufs[1].Buf()))
				byteBufs.put(bufs[2].Buf()[:0])
			}
		case arrow.INT64, arrow.TIMESTAMP:
			if len(bufs) > 1 && bufs[1] != nil {
				int64Bufs.put(bytesAs[int64](bufs[1].Buf()))
			}
		case arrow.FLOAT64:
			if len(bufs) > 1 && bufs[1] != nil {
				float64Bufs.put(bytesAs[float64](bufs[1].Buf()))
			}
		case arrow.BOOL:
			if len(bufs) > 1 && bufs[1] != nil {
				byteBufs.put(bufs[1].Buf()[:0])
			}
		}
	}
	rec.Release()
}

// bytesAs is sliceBytes backwards: the empty slice of numbers, with the
// capacity b's backing array holds, that b was made from.
func bytesAs[T int32 | int64 | float64](b []byte) []T {
	size := int(unsafe.Sizeof(T(0)))
	if cap(b) < size || uintptr(unsafe.Pointer(unsafe.SliceData(b)))%uintptr(size) != 0 {
		return nil
	}
	return unsafe.Slice((*T)(unsafe.Pointer(unsafe.SliceData(b))), cap(b)/size)[:0]
}

// sliceBytes views a slice of fixed-size numbers as bytes, which is how
// Arrow buffers hold them (little-endian, as on every platform Go runs
// Sluice on). The view keeps the slice's capacity, for RecycleRecord.
func sliceBytes[T int32 | int64 | float64](s []T) []byte {
	if len(s) == 0 {
		return nil
	}
	size := int(unsafe.Sizeof(s[0]))
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), cap(s)*size)[:len(s)*size]
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
	if len(c.data)+len(s) > cap(c.data) {
		c.data = byteBufs.grow(c.data, len(s))
	}
	c.data = append(c.data, s...)
	c.appendOffset()
	c.markValid(row)
}

func (c *column) appendStringS(row int, s string) {
	if len(c.data)+len(s) > cap(c.data) {
		c.data = byteBufs.grow(c.data, len(s))
	}
	c.data = append(c.data, s...)
	c.appendOffset()
	c.markValid(row)
}

// appendOffset ends the string value appended last.
func (c *column) appendOffset() {
	if len(c.offs) == cap(c.offs) {
		c.offs = int32Bufs.grow(c.offs, 1)
	}
	c.offs = append(c.offs, int32(len(c.data)))
}

func (c *column) appendInt(row int, v int64) {
	if len(c.i64) == cap(c.i64) {
		c.i64 = int64Bufs.grow(c.i64, 1)
	}
	c.i64 = append(c.i64, v)
	c.markValid(row)
}

func (c *column) appendFloat(row int, v float64) {
	if len(c.f64) == cap(c.f64) {
		c.f64 = float64Bufs.grow(c.f64, 1)
	}
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
