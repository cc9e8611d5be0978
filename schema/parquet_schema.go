package schema

import (
	"reflect"
	"strconv"
	"strings"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"
	"github.com/parquet-go/parquet-go/encoding"
)

// ParquetSchema returns the Parquet schema of the table's raw rows: the same
// columns in the same order as ArrowSchema, required unless nullable, strings
// as BYTE_ARRAY with the STRING logical type, timestamps as INT64
// TIMESTAMP(isAdjustedToUTC=true, MICROS or MILLIS), never NANOS.
//
// String columns are dictionary-encoded here; WriteParquet keeps that for the
// columns whose values repeat and writes high-cardinality ones (ids) plain,
// deciding per file from a sample, because inserting unique values into a
// dictionary costs more than it saves. Timestamps and _offset use
// DELTA_BINARY_PACKED: both mostly increase within a partition, which shrinks
// them to almost nothing (0.006 bytes/row for _offset on the sample table).
func (t *Table) ParquetSchema() *parquet.Schema {
	return parquet.NewSchema(t.Name, t.parquetRoot(nil))
}

// parquetRoot builds the root node; plain[i] true makes string field i plain
// encoded instead of dictionary encoded (nil: all dictionary).
func (t *Table) parquetRoot(plain []bool) *orderedGroup {
	g := &orderedGroup{fields: make([]parquet.Field, 0, len(t.Fields)+3)}
	add := func(name string, n parquet.Node, nullable bool) {
		if nullable {
			n = parquet.Optional(n)
		} else {
			n = parquet.Required(n)
		}
		g.fields = append(g.fields, &orderedField{Node: n, name: name, index: len(g.fields)})
	}
	str := func(i int) parquet.Node {
		if plain != nil && plain[i] {
			return parquet.Encoded(parquet.String(), &parquet.Plain)
		}
		return parquet.Encoded(parquet.String(), &parquet.RLEDictionary)
	}
	for i := range t.Fields {
		f := &t.Fields[i]
		var n parquet.Node
		switch f.Type {
		case TypeString:
			n = str(i)
		case TypeInt64:
			n = parquet.Int(64)
		case TypeFloat64:
			n = parquet.Leaf(parquet.DoubleType)
		case TypeBool:
			n = parquet.Leaf(parquet.BooleanType)
		case TypeTimestamp:
			unit := parquet.Microsecond
			if f.Unit == UnitMillis {
				unit = parquet.Millisecond
			}
			n = parquet.Encoded(parquet.Timestamp(unit), &parquet.DeltaBinaryPacked)
		default:
			n = parquet.Leaf(parquet.ByteArrayType)
		}
		add(f.Name, n, f.Nullable)
	}
	// Source and partition are constant within a raw object: a dictionary of
	// one entry makes them nearly free.
	add(ColSource, parquet.Encoded(parquet.String(), &parquet.RLEDictionary), false)
	add(ColPartition, parquet.Encoded(parquet.String(), &parquet.RLEDictionary), false)
	add(ColOffset, parquet.Encoded(parquet.Int(64), &parquet.DeltaBinaryPacked), false)
	return g
}

// Column is one named column of an OrderedGroup.
type Column struct {
	Name string
	Node parquet.Node
}

// OrderedGroup returns a Parquet group whose columns keep the given order
// (parquet.Group is a map and sorts them by name). Summaries use it too.
func OrderedGroup(cols ...Column) parquet.Node {
	g := &orderedGroup{fields: make([]parquet.Field, 0, len(cols))}
	for _, c := range cols {
		g.fields = append(g.fields, &orderedField{Node: c.Node, name: c.Name, index: len(g.fields)})
	}
	return g
}

// orderedGroup is a Parquet group that keeps its fields in declaration order.
// parquet.Group is a map and sorts columns by name, which would make the
// Parquet column order differ from the table and the Arrow schema.
type orderedGroup struct {
	fields []parquet.Field
}

func (g *orderedGroup) ID() int { return 0 }
func (g *orderedGroup) String() string {
	var b strings.Builder
	_ = parquet.PrintSchema(&b, "", g)
	return b.String()
}
func (g *orderedGroup) Type() parquet.Type          { return parquet.Group{}.Type() }
func (g *orderedGroup) Optional() bool              { return false }
func (g *orderedGroup) Repeated() bool              { return false }
func (g *orderedGroup) Required() bool              { return true }
func (g *orderedGroup) Leaf() bool                  { return false }
func (g *orderedGroup) Fields() []parquet.Field     { return g.fields }
func (g *orderedGroup) Encoding() encoding.Encoding { return nil }
func (g *orderedGroup) Compression() compress.Codec { return nil }
func (g *orderedGroup) GoType() reflect.Type        { return goStructOf(g.fields) }

type orderedField struct {
	parquet.Node
	name  string
	index int
}

func (f *orderedField) Name() string { return f.name }

// Value supports parquet-go's reflection paths (e.g. GenericReader into the
// struct from GoType, or a map[string]any); WriteParquet does not use them.
func (f *orderedField) Value(base reflect.Value) reflect.Value {
	for base.Kind() == reflect.Interface || base.Kind() == reflect.Pointer {
		if base.IsNil() {
			return reflect.Value{}
		}
		base = base.Elem()
	}
	switch base.Kind() {
	case reflect.Struct:
		if f.index < base.NumField() {
			return base.Field(f.index)
		}
	case reflect.Map:
		return base.MapIndex(reflect.ValueOf(f.name))
	}
	return reflect.Value{}
}

// goStructOf builds a struct type with one field per column, in order; column
// names like _source are not Go identifiers, so fields are named C0, C1, ...
// and carry the real name in their parquet tag.
func goStructOf(fields []parquet.Field) reflect.Type {
	sf := make([]reflect.StructField, len(fields))
	for i, f := range fields {
		sf[i] = reflect.StructField{
			Name: "C" + strconv.Itoa(i),
			Type: f.GoType(),
			Tag:  reflect.StructTag(`parquet:` + strconv.Quote(f.Name())),
		}
	}
	return reflect.StructOf(sf)
}
