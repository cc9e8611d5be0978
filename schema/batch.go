package schema

import (
	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"
)

// Batch accumulates decoded rows of one table as Arrow arrays. It is not safe
// for concurrent use.
type Batch struct {
	table *Table
	rb    *array.RecordBuilder
	cols  []colBuilder
	src   *array.StringBuilder
	part  *array.StringBuilder
	off   *array.Int64Builder
}

// colBuilder holds the typed builder of one table field (exactly one is set),
// so appends need no type assertion per value.
type colBuilder struct {
	str *array.StringBuilder
	i64 *array.Int64Builder
	f64 *array.Float64Builder
	bl  *array.BooleanBuilder
	ts  *array.TimestampBuilder
}

// NewBatch returns an empty batch for t's ArrowSchema. mem may be nil for the
// Go allocator.
func NewBatch(t *Table, mem memory.Allocator) *Batch {
	if mem == nil {
		mem = memory.DefaultAllocator
	}
	rb := array.NewRecordBuilder(mem, t.ArrowSchema())
	b := &Batch{table: t, rb: rb, cols: make([]colBuilder, len(t.Fields))}
	for i := range t.Fields {
		switch fb := rb.Field(i).(type) {
		case *array.StringBuilder:
			b.cols[i].str = fb
		case *array.Int64Builder:
			b.cols[i].i64 = fb
		case *array.Float64Builder:
			b.cols[i].f64 = fb
		case *array.BooleanBuilder:
			b.cols[i].bl = fb
		case *array.TimestampBuilder:
			b.cols[i].ts = fb
		}
	}
	n := len(t.Fields)
	b.src = rb.Field(n).(*array.StringBuilder)
	b.part = rb.Field(n + 1).(*array.StringBuilder)
	b.off = rb.Field(n + 2).(*array.Int64Builder)
	return b
}

// Table is the table the batch holds rows of.
func (b *Batch) Table() *Table { return b.table }

// Len is the number of rows appended since the last NewRecord.
func (b *Batch) Len() int { return b.off.Len() }

// NewRecord returns the rows appended so far as a record and empties the
// batch. The caller owns the record and must Release it.
func (b *Batch) NewRecord() arrow.Record { return b.rb.NewRecord() }

// Release frees the builders' memory. The batch must not be used afterwards.
func (b *Batch) Release() { b.rb.Release() }

// ApproxBytes estimates the memory the batch holds, from the builders'
// capacities rather than their lengths, because capacity is what is
// allocated: it may run up to twice the data size since buffers grow by
// doubling. It costs one call per column, so it is cheap to poll.
func (b *Batch) ApproxBytes() int {
	n := stringBytesCap(b.src) + stringBytesCap(b.part) + b.off.Cap()*8 + b.off.Cap()/8
	for i := range b.cols {
		c := &b.cols[i]
		switch {
		case c.str != nil:
			n += stringBytesCap(c.str)
		case c.i64 != nil:
			n += c.i64.Cap()*8 + c.i64.Cap()/8
		case c.f64 != nil:
			n += c.f64.Cap()*8 + c.f64.Cap()/8
		case c.ts != nil:
			n += c.ts.Cap()*8 + c.ts.Cap()/8
		case c.bl != nil:
			n += c.bl.Cap() / 4
		}
	}
	return n
}

func stringBytesCap(sb *array.StringBuilder) int {
	return sb.Cap()*4 + sb.Cap()/8 + sb.DataCap()
}

func timestampOf(micros int64) arrow.Timestamp { return arrow.Timestamp(micros) }

// timestampMillis floors, so a pre-epoch instant stays in its millisecond.
func timestampMillis(micros int64) arrow.Timestamp {
	ms := micros / 1000
	if micros%1000 < 0 {
		ms--
	}
	return arrow.Timestamp(ms)
}
