package inbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"

	"github.com/sluicehq/sluice/ingest"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/schema"
)

// Parquet files are split by row group; each row is turned into the JSON
// object the decoder reads, so a Parquet file goes through the same checks
// and dead letters as a line of JSON. Only flat schemas are read.

// maxParquetInMemory: smaller files are read whole (one GET); larger ones
// through ranged reads.
const maxParquetInMemory = 256 << 20

type rangeReaderAt struct {
	ctx context.Context
	b   objstore.BucketReader
	key string
}

func (r rangeReaderAt) ReadAt(p []byte, off int64) (int, error) {
	rc, err := r.b.GetRange(r.ctx, r.key, off, int64(len(p)))
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	n, err := io.ReadFull(rc, p)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = io.EOF
	}
	return n, err
}

func openParquet(ctx context.Context, b objstore.BucketReader, e Entry) (*parquet.File, error) {
	var ra io.ReaderAt = rangeReaderAt{ctx: ctx, b: b, key: e.Key}
	if e.Size <= maxParquetInMemory {
		rc, err := b.Get(ctx, e.Key)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", e.Key, err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", e.Key, err)
		}
		ra = bytes.NewReader(data)
	}
	f, err := parquet.OpenFile(ra, e.Size, parquet.SkipBloomFilters(true), parquet.SkipPageIndex(true))
	if err != nil {
		return nil, fmt.Errorf("%w: %s is not Parquet: %v", ErrCorrupt, e.Key, err)
	}
	for _, fld := range f.Schema().Fields() {
		if !fld.Leaf() || fld.Repeated() {
			return nil, fmt.Errorf("%w: %s: column %s is nested or repeated; only flat Parquet schemas are read", ErrCorrupt, e.Key, fld.Name())
		}
	}
	return f, nil
}

func planParquet(ctx context.Context, b objstore.BucketReader, e Entry) ([]Split, error) {
	f, err := openParquet(ctx, b, e)
	if err != nil {
		return nil, err
	}
	var out []Split
	for i, rg := range f.RowGroups() {
		out = append(out, Split{Index: i, Start: 0, End: rg.NumRows()})
	}
	if out == nil {
		out = []Split{{Index: 0}}
	}
	return out, nil
}

// parquetColumn says how one column becomes a JSON value.
type parquetColumn struct {
	name   []byte // JSON-quoted
	tsUnit time.Duration
	field  *schema.Field
}

func eachParquet(ctx context.Context, store objstore.BucketReader, t *schema.Table, e Entry, sp Split, fn func([]byte, int64, ingest.Location) error) (lines, expect int64, err error) {
	f, err := openParquet(ctx, store, e)
	if err != nil {
		return 0, 0, err
	}
	rgs := f.RowGroups()
	if sp.Index >= len(rgs) {
		return 0, 0, nil
	}
	var cols []parquetColumn
	for _, fld := range f.Schema().Fields() {
		name, _ := json.Marshal(fld.Name())
		c := parquetColumn{name: name}
		if lt := fld.Type().LogicalType(); lt != nil {
			if ts, ok := lt.Value.(*format.TimestampType); ok && ts.Unit.Value != nil {
				c.tsUnit = ts.Unit.Value.Duration()
			}
		}
		if i := t.FieldIndex(fld.Name()); i >= 0 {
			c.field = &t.Fields[i]
		}
		cols = append(cols, c)
	}
	var first int64 // the row group's first row in the file
	for _, rg := range rgs[:sp.Index] {
		first += rg.NumRows()
	}
	rows := rgs[sp.Index].Rows()
	defer rows.Close()
	buf := make([]parquet.Row, 256)
	var pos int64
	var out []byte
	for {
		n, rerr := rows.ReadRows(buf)
		for _, row := range buf[:n] {
			out = rowJSON(out[:0], cols, row)
			if err := fn(out, pos, ingest.Location{File: e.Key, Offset: -1, Row: first + pos}); err != nil {
				return 0, 0, err
			}
			pos++
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			return 0, 0, fmt.Errorf("%w: %s row group %d: %v", ErrCorrupt, e.Key, sp.Index, rerr)
		}
	}
	return pos, pos, nil
}

// rowJSON appends the row as a JSON object. Timestamps become RFC 3339
// text, or a number in the unit of a unix_* field.
func rowJSON(out []byte, cols []parquetColumn, row parquet.Row) []byte {
	out = append(out, '{')
	first := true
	for _, v := range row {
		ci := v.Column()
		if ci < 0 || ci >= len(cols) {
			continue
		}
		c := cols[ci]
		if !first {
			out = append(out, ',')
		}
		first = false
		out = append(out, c.name...)
		out = append(out, ':')
		if v.IsNull() {
			out = append(out, "null"...)
			continue
		}
		switch v.Kind() {
		case parquet.Boolean:
			out = strconv.AppendBool(out, v.Boolean())
		case parquet.Int32:
			out = strconv.AppendInt(out, int64(v.Int32()), 10)
		case parquet.Int64:
			if c.tsUnit > 0 {
				out = appendTime(out, time.Unix(0, 0).Add(time.Duration(v.Int64())*c.tsUnit).UTC(), c.field)
			} else {
				out = strconv.AppendInt(out, v.Int64(), 10)
			}
		case parquet.Float:
			out = appendFloat(out, float64(v.Float()))
		case parquet.Double:
			out = appendFloat(out, v.Double())
		default:
			q, _ := json.Marshal(string(v.ByteArray()))
			out = append(out, q...)
		}
	}
	return append(out, '}')
}

func appendFloat(out []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(out, "null"...)
	}
	return strconv.AppendFloat(out, f, 'g', -1, 64)
}

func appendTime(out []byte, t time.Time, f *schema.Field) []byte {
	if f != nil {
		switch f.Format {
		case schema.FormatUnixS:
			return strconv.AppendInt(out, t.Unix(), 10)
		case schema.FormatUnixMS:
			return strconv.AppendInt(out, t.UnixMilli(), 10)
		case schema.FormatUnixUS:
			return strconv.AppendInt(out, t.UnixMicro(), 10)
		}
	}
	out = append(out, '"')
	out = t.AppendFormat(out, time.RFC3339Nano)
	return append(out, '"')
}
