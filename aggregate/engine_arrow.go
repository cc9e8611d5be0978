package aggregate

import (
	"fmt"
	"math"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"

	"github.com/sluicehq/sluice/schema"
)

// AddRecord folds decoded rows (an Arrow record in the table's raw layout,
// schema.Table.ArrowSchema; other columns are ignored) into the state,
// exactly as AddParquet folds the same rows written as an object: a caller
// that decodes rows itself (a batch run's mapper) folds them without
// writing and reading back a Parquet buffer. It is safe for concurrent use
// like AddParquet, and an error leaves the aggregator broken the same way.
func (a *Aggregator) AddRecord(rec arrow.Record) (err error) {
	if a.err != nil {
		return a.err
	}
	if e := a.broken.Load(); e != nil {
		return *e
	}
	p := a.acquire()
	defer a.release(p)
	defer func() {
		if err != nil {
			err = fmt.Errorf("aggregate table %s: %w", a.t.Name, err)
			a.broken.CompareAndSwap(nil, &err)
		}
	}()
	arrs := make([]arrow.Array, len(a.cols))
	for i := range a.cols {
		c := &a.cols[i]
		idx := rec.Schema().FieldIndices(c.name)
		if len(idx) == 0 {
			if !a.t.Fields[c.field].Nullable {
				return fmt.Errorf("record has no column %s, and the field is not nullable", c.name)
			}
			continue // read as NULL in every row, like an object without the column
		}
		arr := rec.Column(idx[0])
		if err := checkArrow(c, arr.DataType()); err != nil {
			return err
		}
		arrs[i] = arr
	}
	n := int(rec.NumRows())
	var skipped int64
	for off := 0; off < n; off += batchRows {
		k := min(batchRows, n-off)
		for i := range p.cols {
			p.cols[i].fillArrow(arrs[i], off, k)
		}
		s, err := p.fold(k)
		if err != nil {
			return err
		}
		skipped += s
	}
	a.rows.Add(int64(n))
	a.outOfRange.Add(skipped)
	return nil
}

// checkArrow makes sure an Arrow column has the type the field needs.
func checkArrow(c *colSpec, dt arrow.DataType) error {
	want := arrow.STRING
	switch c.typ {
	case schema.TypeInt64:
		want = arrow.INT64
	case schema.TypeTimestamp:
		want = arrow.TIMESTAMP
	case schema.TypeFloat64:
		want = arrow.FLOAT64
	case schema.TypeBool:
		want = arrow.BOOL
	}
	if dt.ID() != want {
		return fmt.Errorf("column %s is %s, field type %s needs %s", c.name, dt, c.typ, want)
	}
	if ts, ok := dt.(*arrow.TimestampType); ok {
		if unit := map[bool]arrow.TimeUnit{true: arrow.Millisecond, false: arrow.Microsecond}[c.millis]; ts.Unit != unit {
			return fmt.Errorf("column %s has timestamp unit %s, the table says %s", c.name, ts.Unit, unit)
		}
	}
	return nil
}

// fillArrow fills batch positions [0, k) from rows [off, off+k) of arr
// (nil: the column is absent, every row NULL), giving each row the value,
// dimension id and hash the page reader gives the same row.
func (c *colReader) fillArrow(arr arrow.Array, off, k int) {
	valid := c.valid[:k]
	dim := c.spec.dim >= 0
	if arr == nil {
		for j := range valid {
			valid[j] = false
			if dim {
				c.id[j] = 0
			}
		}
		return
	}
	if arr.NullN() == 0 {
		for j := range valid {
			valid[j] = true
		}
	} else {
		for j := range valid {
			valid[j] = arr.IsValid(off + j)
		}
	}
	switch x := arr.(type) {
	case *array.String:
		offs, data := x.ValueOffsets(), x.ValueBytes()
		for j := range valid {
			if !valid[j] {
				if dim {
					c.id[j] = 0
				}
				continue
			}
			b := data[offs[off+j]:offs[off+j+1]]
			if dim {
				c.id[j] = c.intern.str(b)
			}
			if c.hash != nil {
				c.hash[j] = hashBytes(b)
			}
		}
		return
	case *array.Int64:
		vals := x.Int64Values()[off : off+k]
		c.fillBits(valid, func(j int) uint64 { return uint64(vals[j]) })
	case *array.Timestamp:
		vals := x.TimestampValues()[off : off+k]
		c.fillBits(valid, func(j int) uint64 { return uint64(vals[j]) })
	case *array.Float64:
		vals := x.Float64Values()[off : off+k]
		c.fillBits(valid, func(j int) uint64 { return math.Float64bits(vals[j]) })
	case *array.Boolean:
		c.fillBits(valid, func(j int) uint64 {
			if x.Value(off + j) {
				return 1
			}
			return 0
		})
	}
}

// fillBits fills the value, id and hash of fixed-size values, v(j) being
// row j's value as the page reader holds it (int64 or float64 bits, 0/1).
func (c *colReader) fillBits(valid []bool, v func(j int) uint64) {
	dim := c.spec.dim >= 0
	for j := range valid {
		if !valid[j] {
			if dim {
				c.id[j] = 0
			}
			continue
		}
		x := v(j)
		if c.val != nil {
			c.val[j] = x
		}
		if dim {
			c.id[j] = c.intern.int(int64(x))
		}
		if c.hash != nil {
			c.hash[j] = hashUint64(x)
		}
	}
}
