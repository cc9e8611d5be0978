package inspect

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/deprecated"
	"github.com/parquet-go/parquet-go/format"
)

// ParquetReport describes one Parquet object.
type ParquetReport struct {
	Object      string            `json:"object"`
	Size        int64             `json:"size"`
	Rows        int64             `json:"rows"`
	RowGroups   int               `json:"row_groups"`
	CreatedBy   string            `json:"created_by,omitempty"`
	Compression []string          `json:"compression"`
	Columns     []parquetColumn   `json:"columns"`
	EventTime   *eventTimeRange   `json:"event_time,omitempty"`
	Metadata    map[string]string `json:"metadata,omitempty"`
	Sample      []orderedRow      `json:"sample,omitempty"`
}

// parquetColumn is one leaf column.
type parquetColumn struct {
	Name       string `json:"name"` // dotted path for nested columns
	Physical   string `json:"physical"`
	Logical    string `json:"logical,omitempty"`
	Repetition string `json:"repetition"` // REQUIRED, OPTIONAL, REPEATED

	physical format.Type
	tsUnit   time.Duration // > 0 for TIMESTAMP columns: the unit
	utc      bool
	isString bool
	isDate   bool
	repeated bool // this leaf or an ancestor repeats
}

// eventTimeRange is the min and max of the event-time column, both inclusive.
type eventTimeRange struct {
	Column string    `json:"column"`
	Min    time.Time `json:"min"`
	Max    time.Time `json:"max"`
	// From says how it was found: "statistics" (column chunk min/max) or
	// "scan" (some row group had no statistics, so its pages were read).
	From string `json:"from"`
}

func (r *eventTimeRange) merge(o *eventTimeRange) *eventTimeRange {
	if r == nil {
		return o
	}
	if o == nil {
		return r
	}
	m := *r
	if o.Min.Before(m.Min) {
		m.Min = o.Min
	}
	if o.Max.After(m.Max) {
		m.Max = o.Max
	}
	if o.From == "scan" {
		m.From = "scan"
	}
	return &m
}

// inspectParquet opens obj and reports on it, with its first n rows.
func inspectParquet(ctx context.Context, obj inspectObject, n int, eventTimeColumn string) (*ParquetReport, error) {
	ra, closer, err := obj.openAt(ctx)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", obj.name, err)
	}
	defer closer.Close()
	f, err := parquet.OpenFile(ra, obj.size, parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
	if err != nil {
		return nil, fmt.Errorf("read parquet %s: %w", obj.name, err)
	}
	md := f.Metadata()
	rep := &ParquetReport{
		Object:    obj.name,
		Size:      obj.size,
		Rows:      f.NumRows(),
		RowGroups: len(md.RowGroups),
		CreatedBy: md.CreatedBy,
	}
	rep.Columns, err = leafColumns(md.Schema)
	if err != nil {
		return nil, fmt.Errorf("read parquet %s: %w", obj.name, err)
	}
	codecs := map[string]bool{}
	for _, rg := range md.RowGroups {
		for _, cc := range rg.Columns {
			codecs[cc.MetaData.Codec.String()] = true
		}
	}
	for c := range codecs {
		rep.Compression = append(rep.Compression, c)
	}
	sort.Strings(rep.Compression)
	for _, kv := range md.KeyValueMetadata {
		if rep.Metadata == nil {
			rep.Metadata = make(map[string]string)
		}
		rep.Metadata[kv.Key] = kv.Value
	}

	if col := pickEventTimeColumn(rep.Columns, eventTimeColumn); col >= 0 {
		rep.EventTime, err = columnTimeRange(f, rep.Columns, col)
		if err != nil {
			return nil, fmt.Errorf("event-time range of %s: %w", obj.name, err)
		}
	} else if eventTimeColumn != "" {
		return nil, fmt.Errorf("%s: no TIMESTAMP column %q", obj.name, eventTimeColumn)
	}
	if n > 0 {
		rep.Sample, err = firstRows(f, rep.Columns, n)
		if err != nil {
			return nil, fmt.Errorf("read rows of %s: %w", obj.name, err)
		}
	}
	return rep, nil
}

// leafColumns flattens the depth-first schema element list into its leaves.
func leafColumns(elems []format.SchemaElement) ([]parquetColumn, error) {
	if len(elems) == 0 {
		return nil, errors.New("empty schema")
	}
	var cols []parquetColumn
	var walk func(i int, path []string, repeated bool) (int, error)
	walk = func(i int, path []string, repeated bool) (int, error) {
		if i >= len(elems) {
			return i, errors.New("schema ends inside a group")
		}
		e := elems[i]
		rep, _ := e.RepetitionType.Get()
		repeated = repeated || rep == format.Repeated
		if i > 0 {
			path = append(path[:len(path):len(path)], e.Name)
		}
		children, isGroup := e.NumChildren.Get()
		if isGroup && children > 0 || i == 0 {
			next := i + 1
			for range children {
				var err error
				if next, err = walk(next, path, repeated); err != nil {
					return next, err
				}
			}
			return next, nil
		}
		phys, ok := e.Type.Get()
		if !ok {
			return i + 1, fmt.Errorf("column %s has no type", strings.Join(path, "."))
		}
		c := parquetColumn{
			Name:       strings.Join(path, "."),
			Physical:   phys.String(),
			Repetition: rep.String(),
			physical:   phys,
			repeated:   repeated,
		}
		if lt := e.LogicalType.Value; lt != nil {
			c.Logical = lt.String()
			switch t := lt.(type) {
			case *format.TimestampType:
				c.utc = t.IsAdjustedToUTC
				switch t.Unit.Value.(type) {
				case *format.MilliSeconds:
					c.tsUnit = time.Millisecond
				case *format.MicroSeconds:
					c.tsUnit = time.Microsecond
				case *format.NanoSeconds:
					c.tsUnit = time.Nanosecond
				}
			case *format.StringType, *format.JsonType, *format.EnumType:
				c.isString = true
			case *format.DateType:
				c.isDate = true
			}
		} else if ct, ok := e.ConvertedType.Get(); ok {
			c.Logical = convertedTypeName(ct)
			switch ct {
			case deprecated.TimestampMillis:
				c.tsUnit, c.utc = time.Millisecond, true
			case deprecated.TimestampMicros:
				c.tsUnit, c.utc = time.Microsecond, true
			case deprecated.UTF8, deprecated.Json, deprecated.Enum:
				c.isString = true
			case deprecated.Date:
				c.isDate = true
			}
		}
		if c.tsUnit > 0 && phys != format.Int64 {
			c.tsUnit = 0 // not a layout we can read as a time
		}
		cols = append(cols, c)
		return i + 1, nil
	}
	if _, err := walk(0, nil, false); err != nil {
		return nil, err
	}
	return cols, nil
}

// pickEventTimeColumn returns the index of the named TIMESTAMP column, or of
// the first one when name is empty; -1 if there is none.
func pickEventTimeColumn(cols []parquetColumn, name string) int {
	for i, c := range cols {
		if c.tsUnit > 0 && !c.repeated && (name == "" || c.Name == name) {
			return i
		}
	}
	return -1
}

// columnTimeRange takes the min and max of a TIMESTAMP column from the
// column chunk statistics, scanning the pages of any row group without them.
func columnTimeRange(f *parquet.File, cols []parquetColumn, col int) (*eventTimeRange, error) {
	c := cols[col]
	var (
		lo, hi = int64(math.MaxInt64), int64(math.MinInt64)
		found  bool
		from   = "statistics"
	)
	for i, rg := range f.Metadata().RowGroups {
		if col >= len(rg.Columns) {
			return nil, fmt.Errorf("row group %d has %d columns, schema has %d", i, len(rg.Columns), len(cols))
		}
		st := rg.Columns[col].MetaData.Statistics
		mn, mx := st.MinValue, st.MaxValue
		if len(mn) != 8 || len(mx) != 8 {
			mn, mx = st.Min, st.Max // older writers; signed order is right for INT64
		}
		if len(mn) == 8 && len(mx) == 8 {
			lo = min(lo, int64(binary.LittleEndian.Uint64(mn)))
			hi = max(hi, int64(binary.LittleEndian.Uint64(mx)))
			found = true
			continue
		}
		if rg.NumRows == 0 || st.NullCount == rg.NumRows {
			continue
		}
		from = "scan"
		rlo, rhi, ok, err := scanInt64Bounds(f.RowGroups()[i].ColumnChunks()[col])
		if err != nil {
			return nil, fmt.Errorf("scan row group %d: %w", i, err)
		}
		if ok {
			lo, hi, found = min(lo, rlo), max(hi, rhi), true
		}
	}
	if !found {
		return nil, nil
	}
	return &eventTimeRange{Column: c.Name, Min: c.toTime(lo), Max: c.toTime(hi), From: from}, nil
}

func scanInt64Bounds(cc parquet.ColumnChunk) (lo, hi int64, ok bool, err error) {
	pages := cc.Pages()
	defer pages.Close()
	lo, hi = math.MaxInt64, math.MinInt64
	for {
		p, err := pages.ReadPage()
		if errors.Is(err, io.EOF) {
			return lo, hi, ok, nil
		}
		if err != nil {
			return 0, 0, false, err
		}
		if mn, mx, has := p.Bounds(); has {
			lo, hi, ok = min(lo, mn.Int64()), max(hi, mx.Int64()), true
		}
		parquet.Release(p)
	}
}

func (c parquetColumn) toTime(v int64) time.Time {
	var t time.Time
	switch c.tsUnit {
	case time.Millisecond:
		t = time.UnixMilli(v)
	case time.Microsecond:
		t = time.UnixMicro(v)
	default:
		t = time.Unix(0, v)
	}
	// Not adjusted to UTC means "local wall time, zone unknown"; showing it
	// as UTC keeps the wall clock digits, which is what was stored.
	return t.UTC()
}

// orderedRow keeps the schema's column order when printed as JSON.
type orderedRow []cell

type cell struct {
	name  string
	value any // nil, bool, int64, float64, string, time.Time, []any, or bytesValue
}

// bytesValue is binary data that is not text.
type bytesValue []byte

func (r orderedRow) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, c := range r {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(c.name)
		b.Write(k)
		b.WriteByte(':')
		v, err := json.Marshal(jsonValue(c.value))
		if err != nil {
			return nil, fmt.Errorf("column %s: %w", c.name, err)
		}
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func jsonValue(v any) any {
	switch x := v.(type) {
	case bytesValue:
		return base64.StdEncoding.EncodeToString(x)
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return fmt.Sprint(x) // JSON has no NaN or Inf
		}
	case time.Time:
		return x.Format(time.RFC3339Nano)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = jsonValue(e)
		}
		return out
	}
	return v
}

// firstRows reads up to n rows, in file order.
func firstRows(f *parquet.File, cols []parquetColumn, n int) ([]orderedRow, error) {
	var out []orderedRow
	buf := make([]parquet.Row, min(n, 64))
	for _, rg := range f.RowGroups() {
		if len(out) >= n {
			break
		}
		rows := rg.Rows()
		for len(out) < n {
			k, err := rows.ReadRows(buf[:min(len(buf), n-len(out))])
			for _, r := range buf[:k] {
				out = append(out, decodeRow(r, cols))
			}
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				rows.Close()
				return nil, err
			}
			if k == 0 {
				break
			}
		}
		if err := rows.Close(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func decodeRow(r parquet.Row, cols []parquetColumn) orderedRow {
	row := make(orderedRow, len(cols))
	for i, c := range cols {
		row[i].name = c.Name
	}
	r.Range(func(ci int, vs []parquet.Value) bool {
		if ci >= len(cols) {
			return false
		}
		c := cols[ci]
		if !c.repeated {
			if len(vs) > 0 {
				row[ci].value = c.decode(vs[0])
			}
			return true
		}
		list := make([]any, 0, len(vs))
		for _, v := range vs {
			if !v.IsNull() {
				list = append(list, c.decode(v))
			}
		}
		row[ci].value = list
		return true
	})
	return row
}

func (c parquetColumn) decode(v parquet.Value) any {
	if v.IsNull() {
		return nil
	}
	switch c.physical {
	case format.Boolean:
		return v.Boolean()
	case format.Int32:
		if c.isDate {
			return time.Unix(int64(v.Int32())*86400, 0).UTC().Format(time.DateOnly)
		}
		return int64(v.Int32())
	case format.Int64:
		if c.tsUnit > 0 {
			return c.toTime(v.Int64())
		}
		return v.Int64()
	case format.Float:
		return float64(v.Float())
	case format.Double:
		return v.Double()
	case format.ByteArray, format.FixedLenByteArray:
		b := v.ByteArray()
		if c.isString || utf8.Valid(b) {
			return string(b)
		}
		return bytesValue(bytes.Clone(b))
	default:
		return v.String()
	}
}

// convertedTypeNames are the names of the deprecated converted types, which
// older writers set instead of logical types.
var convertedTypeNames = [...]string{
	"UTF8", "MAP", "MAP_KEY_VALUE", "LIST", "ENUM", "DECIMAL", "DATE", "TIME_MILLIS", "TIME_MICROS",
	"TIMESTAMP_MILLIS", "TIMESTAMP_MICROS", "UINT_8", "UINT_16", "UINT_32", "UINT_64",
	"INT_8", "INT_16", "INT_32", "INT_64", "JSON", "BSON", "INTERVAL",
}

func convertedTypeName(ct deprecated.ConvertedType) string {
	if ct >= 0 && int(ct) < len(convertedTypeNames) {
		return convertedTypeNames[ct]
	}
	return fmt.Sprintf("CONVERTED_TYPE(%d)", ct)
}
