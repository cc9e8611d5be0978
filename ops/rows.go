package ops

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/sluicehq/sluice/schema"
)

// colConv turns one Parquet value of a column into the value an
// expression sees; nullable columns give pointers (nil for NULL).
type colConv struct {
	name     string
	nullable bool
	null     any // the value of a NULL or absent cell
	conv     func(v parquet.Value) any
}

// convFor returns the converter of a column holding values of type typ.
func convFor(name string, typ schema.Type, unit string, nullable bool) colConv {
	c := colConv{name: name, nullable: nullable}
	if nullable {
		c.null = nullPointer(typ)
	}
	switch typ {
	case schema.TypeString:
		c.conv = func(v parquet.Value) any {
			s := string(v.ByteArray())
			if nullable {
				return &s
			}
			return s
		}
	case schema.TypeInt64:
		c.conv = func(v parquet.Value) any {
			n := v.Int64()
			if nullable {
				return &n
			}
			return n
		}
	case schema.TypeFloat64:
		c.conv = func(v parquet.Value) any {
			f := v.Double()
			if nullable {
				return &f
			}
			return f
		}
	case schema.TypeBool:
		c.conv = func(v parquet.Value) any {
			b := v.Boolean()
			if nullable {
				return &b
			}
			return b
		}
	case schema.TypeTimestamp:
		c.conv = func(v parquet.Value) any {
			t := time.UnixMicro(v.Int64()).UTC()
			if unit == schema.UnitMillis {
				t = time.UnixMilli(v.Int64()).UTC()
			}
			if nullable {
				return &t
			}
			return t
		}
	}
	return c
}

// readRows calls fn with each row of a Parquet object as a map from the
// columns in convs to values. The map is reused between calls. Columns the
// file lacks (written before a nullable field was added) are NULL.
func readRows(data []byte, convs []colConv, fn func(row map[string]any) error) error {
	f, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return fmt.Errorf("open parquet: %w", err)
	}
	byLeaf := map[int]int{}
	row := make(map[string]any, len(convs))
	nulls := make([]any, len(convs))
	for i, c := range convs {
		nulls[i] = c.null
		lc, ok := f.Schema().Lookup(c.name)
		if !ok {
			if !c.nullable {
				return fmt.Errorf("object has no column %s", c.name)
			}
			continue
		}
		byLeaf[lc.ColumnIndex] = i
	}
	buf := make([]parquet.Row, 256)
	for _, rg := range f.RowGroups() {
		err := func() error {
			rows := rg.Rows()
			defer rows.Close()
			for {
				n, err := rows.ReadRows(buf)
				for _, r := range buf[:n] {
					for i, c := range convs {
						row[c.name] = nulls[i]
					}
					for _, v := range r {
						i, ok := byLeaf[v.Column()]
						if !ok || v.IsNull() {
							continue
						}
						row[convs[i].name] = convs[i].conv(v)
					}
					if err := fn(row); err != nil {
						return err
					}
				}
				if errors.Is(err, io.EOF) {
					return nil
				}
				if err != nil {
					return err
				}
				if n == 0 {
					return nil
				}
			}
		}()
		if err != nil {
			return err
		}
	}
	return nil
}

func nullPointer(typ schema.Type) any {
	switch typ {
	case schema.TypeString:
		return (*string)(nil)
	case schema.TypeInt64:
		return (*int64)(nil)
	case schema.TypeFloat64:
		return (*float64)(nil)
	case schema.TypeBool:
		return (*bool)(nil)
	case schema.TypeTimestamp:
		return (*time.Time)(nil)
	}
	return nil
}

// recordConvs are the converters of a table's raw rows.
func recordConvs(t *schema.Table) []colConv {
	out := make([]colConv, 0, len(t.Fields)+3)
	for i := range t.Fields {
		f := &t.Fields[i]
		out = append(out, convFor(f.Name, f.Type, f.Unit, f.Nullable))
	}
	return append(out, convFor(schema.ColSource, schema.TypeString, "", false),
		convFor(schema.ColPartition, schema.TypeString, "", false),
		convFor(schema.ColOffset, schema.TypeInt64, "", false))
}

// summaryConvs are the converters of a rollup's summary rows: the window
// bounds, the dimensions (nullable) and the plain measure columns (float64).
func summaryConvs(t *schema.Table) []colConv {
	out := []colConv{convFor("window_start", schema.TypeTimestamp, schema.UnitMicros, false),
		convFor("window_end", schema.TypeTimestamp, schema.UnitMicros, false)}
	for _, d := range t.Rollup.Dimensions {
		f := t.Fields[t.FieldIndex(d)]
		out = append(out, convFor(d, f.Type, f.Unit, true))
	}
	for _, c := range measureColumns(t) {
		c := c
		// NULL (an average of nothing) is NaN: every comparison is false.
		out = append(out, colConv{name: c, nullable: true, null: math.NaN(), conv: func(v parquet.Value) any {
			switch v.Kind() {
			case parquet.Int64, parquet.Int32:
				return float64(v.Int64())
			case parquet.Double, parquet.Float:
				return v.Double()
			}
			return math.NaN()
		}})
	}
	return out
}
