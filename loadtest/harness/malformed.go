package harness

import (
	"bytes"
	"strings"

	"github.com/sluicehq/sluice/schema"
)

// BadKinds are the dead-letter reasons the harness produces records for,
// one kind after another: every reason the decoder knows.
var BadKinds = []schema.Reason{
	schema.ReasonMalformedJSON,
	schema.ReasonNotObject,
	schema.ReasonWrongType,
	schema.ReasonMissingField,
	schema.ReasonBadEventTime,
	schema.ReasonAbsurdEventTime,
	schema.ReasonTooLarge,
	schema.ReasonInvalidUTF8,
	schema.ReasonNumberOutOfRange,
}

// malform turns a good generated event (a flat JSON object as gen.Generator
// writes it) into a record the table must refuse for reason. The record
// still looks like the traffic around it, as real bad records do. maxBytes
// is the table's max_record_bytes.
func malform(good []byte, reason schema.Reason, maxBytes int) []byte {
	switch reason {
	case schema.ReasonMalformedJSON:
		return append([]byte(nil), good[:len(good)/2]...) // cut off mid-record
	case schema.ReasonNotObject:
		out := append([]byte{'['}, good...)
		return append(out, ']')
	case schema.ReasonWrongType:
		return replaceValue(good, "ok", func(v []byte) []byte { return []byte(`"` + string(v) + `"`) })
	case schema.ReasonMissingField:
		return replaceValue(good, "event_id", func([]byte) []byte { return []byte("null") })
	case schema.ReasonBadEventTime:
		return replaceValue(good, "ts", func(v []byte) []byte { return bytes.Replace(v, []byte("T"), []byte(" "), 1) })
	case schema.ReasonAbsurdEventTime:
		return replaceValue(good, "ts", func([]byte) []byte { return []byte(`"1999-12-31T23:59:59Z"`) })
	case schema.ReasonTooLarge:
		return pad(good, maxBytes+1)
	case schema.ReasonInvalidUTF8:
		return replaceValue(good, "user_id", func(v []byte) []byte { return append([]byte{'"', 0xff}, v[1:]...) })
	case schema.ReasonNumberOutOfRange:
		return replaceValue(good, "latency_ms", func([]byte) []byte { return []byte("1e19") })
	}
	return append([]byte(nil), good...)
}

// replaceValue returns obj with the raw value of key replaced by fn(value).
// obj is flat with no commas or braces inside values, as generated events are.
func replaceValue(obj []byte, key string, fn func([]byte) []byte) []byte {
	k := []byte(`"` + key + `":`)
	i := bytes.Index(obj, k)
	if i < 0 {
		return append([]byte(nil), obj...)
	}
	start := i + len(k)
	end := start + bytes.IndexAny(obj[start:], ",}")
	out := make([]byte, 0, len(obj)+16)
	out = append(out, obj[:start]...)
	out = append(out, fn(obj[start:end])...)
	return append(out, obj[end:]...)
}

// pad appends an ignored "pad" string field so the record is about size
// bytes; records already that large are returned as they are.
func pad(obj []byte, size int) []byte {
	const overhead = len(`,"pad":""`)
	n := size - len(obj) - overhead
	if n <= 0 || len(obj) == 0 || obj[len(obj)-1] != '}' {
		return obj
	}
	out := make([]byte, 0, size)
	out = append(out, obj[:len(obj)-1]...)
	out = append(out, `,"pad":"`...)
	out = append(out, strings.Repeat("x", n)...)
	return append(out, `"}`...)
}
