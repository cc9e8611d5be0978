package query

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/ipc"
	"github.com/apache/arrow/go/v15/arrow/memory"
)

// Formats by media type.
const (
	FormatJSON  = "application/json"
	FormatJSONL = "application/x-ndjson"
	FormatCSV   = "text/csv"
	FormatArrow = "application/vnd.apache.arrow.stream"
)

// Negotiate picks the format: ?format= (json, jsonl, csv, arrow) wins,
// then the first supported type in Accept; JSON by default.
func Negotiate(format, accept string) (string, error) {
	switch format {
	case "json":
		return FormatJSON, nil
	case "jsonl", "ndjson":
		return FormatJSONL, nil
	case "csv":
		return FormatCSV, nil
	case "arrow":
		return FormatArrow, nil
	case "":
	default:
		return "", badf("format %q: want json, jsonl, csv or arrow", format)
	}
	for part := range strings.SplitSeq(accept, ",") {
		mt, _, _ := strings.Cut(strings.TrimSpace(part), ";")
		switch strings.ToLower(strings.TrimSpace(mt)) {
		case FormatJSON, "*/*", "application/*", "":
			return FormatJSON, nil
		case FormatJSONL, "application/jsonl", "application/x-jsonlines":
			return FormatJSONL, nil
		case FormatCSV:
			return FormatCSV, nil
		case FormatArrow:
			return FormatArrow, nil
		}
	}
	return "", fmt.Errorf("%w: none of Accept %q is served (json, x-ndjson, csv, arrow stream)", ErrNotAcceptable, accept)
}

// ErrNotAcceptable: 406.
var ErrNotAcceptable = errors.New("not acceptable")

// ErrTooLarge: the encoded result is over the limit.
var ErrTooLarge = errors.New("result too large")

// Encode writes res in format into a buffer of at most limit bytes. The
// whole answer is encoded before anything is sent, so nothing can fail
// after the 200; JSON lines and CSV also end with a status record and
// Arrow's schema says how many rows follow, so a cut stream is noticed
// even where the Content-Length is lost.
func Encode(res *Result, format string, limit int) ([]byte, error) {
	var buf bytes.Buffer
	var err error
	switch format {
	case FormatJSON:
		err = encodeJSON(&buf, res)
	case FormatJSONL:
		err = encodeJSONL(&buf, res)
	case FormatCSV:
		err = encodeCSV(&buf, res)
	case FormatArrow:
		err = encodeArrow(&buf, res)
	default:
		err = fmt.Errorf("unknown format %q", format)
	}
	if err != nil {
		return nil, err
	}
	if buf.Len() > limit {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d: narrow the range, group by less or set a limit", ErrTooLarge, buf.Len(), limit)
	}
	return buf.Bytes(), nil
}

// jsonValue makes a cell JSON-safe: times in RFC 3339 with the zone's
// offset, non-finite floats as null.
func jsonValue(v any) any {
	switch x := v.(type) {
	case time.Time:
		return x.Format(time.RFC3339)
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil
		}
	}
	return v
}

// appendRow appends a row as a JSON object with the columns in order;
// keys are the columns' names, already encoded. Written by hand: the
// encoder's reflection and re-validation of Marshaler output were most of
// a large answer's cost.
func appendRow(b []byte, keys [][]byte, row []any) []byte {
	b = append(b, '{')
	for i, v := range row {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, keys[i]...)
		b = append(b, ':')
		b = appendValue(b, v)
	}
	return append(b, '}')
}

func jsonKeys(cols []Column) [][]byte {
	keys := make([][]byte, len(cols))
	for i, c := range cols {
		keys[i] = appendString(nil, c.Name)
	}
	return keys
}

func appendValue(b []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...)
	case time.Time:
		b = append(b, '"')
		b = x.AppendFormat(b, time.RFC3339)
		return append(b, '"')
	case string:
		return appendString(b, x)
	case int64:
		return strconv.AppendInt(b, x, 10)
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return append(b, "null"...)
		}
		return strconv.AppendFloat(b, x, 'g', -1, 64)
	case bool:
		return strconv.AppendBool(b, x)
	}
	enc, _ := json.Marshal(v)
	return append(b, enc...)
}

// appendString appends s as a JSON string: quotes, backslashes and control
// characters escaped, invalid UTF-8 replaced by U+FFFD (as encoding/json).
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, `\ufffd`...)
		case r == '"' || r == '\\':
			b = append(b, '\\', byte(r))
		case r == '\n':
			b = append(b, '\\', 'n')
		case r == '\r':
			b = append(b, '\\', 'r')
		case r == '\t':
			b = append(b, '\\', 't')
		case r == '\b':
			b = append(b, '\\', 'b')
		case r == '\f':
			b = append(b, '\\', 'f')
		case r < 0x20 || r == '<' || r == '>' || r == '&' || r == 0x2028 || r == 0x2029:
			b = append(b, '\\', 'u', hex[(r>>12)&0xf], hex[(r>>8)&0xf], hex[(r>>4)&0xf], hex[r&0xf])
		default:
			b = utf8.AppendRune(b, r)
		}
	}
	return append(b, '"')
}

// Status is the last record of a JSON lines answer (and a field of JSON).
type Status struct {
	Status string `json:"status"` // "ok"
	Rows   int    `json:"rows"`
}

func encodeJSON(buf *bytes.Buffer, res *Result) error {
	meta, err := json.Marshal(res.Meta)
	if err != nil {
		return err
	}
	keys := jsonKeys(res.Meta.Columns)
	b := append(make([]byte, 0, 256*len(res.Rows)+len(meta)+64), `{"meta":`...)
	b = append(b, meta...)
	b = append(b, `,"rows":[`...)
	for i, r := range res.Rows {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendRow(b, keys, r)
	}
	b = append(b, "],\"status\":\"ok\"}\n"...)
	buf.Write(b)
	return nil
}

func encodeJSONL(buf *bytes.Buffer, res *Result) error {
	meta, err := json.Marshal(map[string]Meta{"meta": res.Meta})
	if err != nil {
		return err
	}
	keys := jsonKeys(res.Meta.Columns)
	b := append(make([]byte, 0, 256*len(res.Rows)+len(meta)+64), meta...)
	b = append(b, '\n')
	for _, r := range res.Rows {
		b = appendRow(b, keys, r)
		b = append(b, '\n')
	}
	status, _ := json.Marshal(Status{Status: "ok", Rows: len(res.Rows)})
	b = append(b, status...)
	buf.Write(append(b, '\n'))
	return nil
}

// CSVStatus is the first field of the last CSV record: "#status", "ok",
// and the number of rows.
const CSVStatus = "#status"

func encodeCSV(buf *bytes.Buffer, res *Result) error {
	w := csv.NewWriter(buf)
	head := make([]string, len(res.Meta.Columns))
	for i, c := range res.Meta.Columns {
		head[i] = c.Name
	}
	if err := w.Write(head); err != nil {
		return err
	}
	rec := make([]string, len(head))
	for _, r := range res.Rows {
		for i, v := range r {
			switch x := jsonValue(v).(type) {
			case nil:
				rec[i] = ""
			case string:
				rec[i] = x
			case int64:
				rec[i] = strconv.FormatInt(x, 10)
			case float64:
				rec[i] = strconv.FormatFloat(x, 'g', -1, 64)
			case bool:
				rec[i] = strconv.FormatBool(x)
			default:
				rec[i] = fmt.Sprint(x)
			}
		}
		if err := w.Write(rec); err != nil {
			return err
		}
	}
	if err := w.Write([]string{CSVStatus, "ok", strconv.Itoa(len(res.Rows))}); err != nil {
		return err
	}
	w.Flush()
	return w.Error()
}

// Arrow schema metadata keys.
const (
	ArrowMetaRows      = "sluice.rows"
	ArrowMetaComplete  = "sluice.complete"
	ArrowMetaWatermark = "sluice.watermark"
)

func encodeArrow(buf *bytes.Buffer, res *Result) error {
	fields := make([]arrow.Field, len(res.Meta.Columns))
	for i, c := range res.Meta.Columns {
		var dt arrow.DataType
		switch c.Type {
		case "timestamp":
			dt = &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: res.Meta.Zone}
		case "string":
			dt = arrow.BinaryTypes.String
		case "int64":
			dt = arrow.PrimitiveTypes.Int64
		case "float64":
			dt = arrow.PrimitiveTypes.Float64
		case "bool":
			dt = arrow.FixedWidthTypes.Boolean
		default:
			return fmt.Errorf("column %s: type %s", c.Name, c.Type)
		}
		fields[i] = arrow.Field{Name: c.Name, Type: dt, Nullable: i >= 2}
	}
	keys := []string{ArrowMetaRows, ArrowMetaComplete}
	vals := []string{strconv.Itoa(len(res.Rows)), strconv.FormatBool(res.Meta.Complete)}
	if res.Meta.Watermark != nil {
		keys = append(keys, ArrowMetaWatermark)
		vals = append(vals, res.Meta.Watermark.Format(time.RFC3339Nano))
	}
	md := arrow.NewMetadata(keys, vals)
	sc := arrow.NewSchema(fields, &md)
	mem := memory.NewGoAllocator()
	w := ipc.NewWriter(buf, ipc.WithSchema(sc), ipc.WithAllocator(mem))
	const batch = 64 << 10
	for off := 0; off < len(res.Rows) || off == 0; off += batch {
		end := min(off+batch, len(res.Rows))
		b := array.NewRecordBuilder(mem, sc)
		for _, r := range res.Rows[off:end] {
			for i, v := range r {
				fb := b.Field(i)
				if v == nil {
					fb.AppendNull()
					continue
				}
				switch x := v.(type) {
				case time.Time:
					fb.(*array.TimestampBuilder).Append(arrow.Timestamp(x.UnixMicro()))
				case string:
					fb.(*array.StringBuilder).Append(x)
				case int64:
					fb.(*array.Int64Builder).Append(x)
				case float64:
					fb.(*array.Float64Builder).Append(x)
				case bool:
					fb.(*array.BooleanBuilder).Append(x)
				}
			}
		}
		rec := b.NewRecord()
		err := w.Write(rec)
		rec.Release()
		b.Release()
		if err != nil {
			return err
		}
		if len(res.Rows) == 0 {
			break
		}
	}
	return w.Close()
}
