package schema

import (
	"github.com/apache/arrow/go/v15/arrow"
)

// ArrowSchema returns the Arrow schema of the table's raw rows: its fields in
// order, then the metadata columns _source (utf8), _partition (utf8) and
// _offset (int64), all non-null. Timestamps are UTC with the field's unit
// (microseconds unless unit: millis), never nanoseconds.
func (t *Table) ArrowSchema() *arrow.Schema {
	fields := make([]arrow.Field, 0, len(t.Fields)+3)
	for i := range t.Fields {
		f := &t.Fields[i]
		fields = append(fields, arrow.Field{Name: f.Name, Type: f.arrowType(), Nullable: f.Nullable})
	}
	fields = append(fields,
		arrow.Field{Name: ColSource, Type: arrow.BinaryTypes.String},
		arrow.Field{Name: ColPartition, Type: arrow.BinaryTypes.String},
		arrow.Field{Name: ColOffset, Type: arrow.PrimitiveTypes.Int64},
	)
	return arrow.NewSchema(fields, nil)
}

func (f *Field) arrowType() arrow.DataType {
	switch f.Type {
	case TypeString:
		return arrow.BinaryTypes.String
	case TypeInt64:
		return arrow.PrimitiveTypes.Int64
	case TypeFloat64:
		return arrow.PrimitiveTypes.Float64
	case TypeBool:
		return arrow.FixedWidthTypes.Boolean
	case TypeTimestamp:
		if f.Unit == UnitMillis {
			return &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "UTC"}
		}
		return &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}
	}
	// Validate rejects every other type; a zero Table is the only way here.
	return arrow.Null
}
