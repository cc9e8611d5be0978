package schema

import (
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// Reason says why a record was rejected. The values are stable: they are
// written into dead-letter lines and used as metric labels.
type Reason string

// Rejection reasons, from the cheapest check to the last.
const (
	ReasonTooLarge         Reason = "too_large"
	ReasonMalformedJSON    Reason = "malformed_json"
	ReasonInvalidUTF8      Reason = "invalid_utf8"
	ReasonNotObject        Reason = "not_object"
	ReasonWrongType        Reason = "wrong_type"
	ReasonNumberOutOfRange Reason = "number_out_of_range"
	ReasonMissingField     Reason = "missing_field"
	ReasonBadEventTime     Reason = "bad_event_time"
	ReasonAbsurdEventTime  Reason = "absurd_event_time"
)

// Reasons lists every Reason, e.g. to pre-create metric label values.
func Reasons() []Reason {
	return []Reason{ReasonTooLarge, ReasonMalformedJSON, ReasonInvalidUTF8, ReasonNotObject,
		ReasonWrongType, ReasonNumberOutOfRange, ReasonMissingField, ReasonBadEventTime, ReasonAbsurdEventTime}
}

// RecordError is why one record was rejected. Field is empty when the problem
// is not tied to a field (too_large, malformed_json, not_object, ...).
type RecordError struct {
	Reason Reason
	Field  string
	Detail string
}

func (e *RecordError) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("%s: field %q: %s", e.Reason, e.Field, e.Detail)
	}
	return fmt.Sprintf("%s: %s", e.Reason, e.Detail)
}

// Meta is where a record came from; it fills the metadata columns.
type Meta struct {
	Source    string // e.g. "kafka:events"
	Partition string // e.g. "3"
	Offset    int64
	// The record's metadata, read only by tables that map it to fields
	// (kafka.columns, kinesis.columns): the key or partition key (nil:
	// none), headers and the broker's or stream's timestamp.
	Key     []byte
	Headers []Header
	Time    time.Time
}

// nowEvery is how many records a Decoder checks against one clock reading.
const nowEvery = 256

// minEventMicros is 2000-01-01T00:00:00Z: anything earlier is a unit mix-up
// (seconds read as millis, zero values) rather than real data.
const minEventMicros = 946684800 * 1_000_000

// maxDepth bounds JSON nesting so hostile input cannot exhaust the stack.
const maxDepth = 64

type fieldKind uint8

const (
	kindString fieldKind = iota
	kindInt64
	kindFloat64
	kindBool
	kindTimestamp
)

type tsFormat uint8

const (
	tsRFC3339 tsFormat = iota
	tsUnixS
	tsUnixMS
	tsUnixUS
	tsLayout
)

type fieldPlan struct {
	name      string
	kind      fieldKind
	nullable  bool
	eventTime bool
	format    tsFormat
	layout    string
	millis    bool
}

// pathNode is one JSON object level of the table's field paths.
type pathNode struct {
	keys  []string
	kids  []pathKid
	index map[string]int // only for wide objects, where a linear scan loses
	// fields lists every field below this node, to reset them when a
	// duplicate key replaces the whole object.
	fields []int
	// next is the index after the key found last: a guess at the next key.
	// The tree belongs to one Decoder, so this needs no lock.
	next int
}

type pathKid struct {
	field int // >= 0 for a leaf
	node  *pathNode
}

const linearLookupMax = 12

func (n *pathNode) lookup(key []byte) *pathKid {
	// Producers write the keys of an object in the same order record after
	// record: the key after the last one found is tried first, which makes
	// the lookup one comparison where the order holds.
	if i := n.next; i < len(n.keys) && n.keys[i] == string(key) {
		n.next = i + 1
		return &n.kids[i]
	}
	if n.index != nil {
		if i, ok := n.index[string(key)]; ok {
			n.next = i + 1
			return &n.kids[i]
		}
		return nil
	}
	for i, k := range n.keys {
		if len(k) == len(key) && k == string(key) {
			n.next = i + 1
			return &n.kids[i]
		}
	}
	return nil
}

func (n *pathNode) child(key string) *pathKid {
	for i, k := range n.keys {
		if k == key {
			return &n.kids[i]
		}
	}
	n.keys = append(n.keys, key)
	n.kids = append(n.kids, pathKid{field: -1})
	return &n.kids[len(n.kids)-1]
}

func buildPaths(t *Table) *pathNode {
	root := &pathNode{}
	for i := range t.Fields {
		segs := t.Fields[i].PathSegments()
		n := root
		for j, s := range segs {
			n.fields = append(n.fields, i)
			k := n.child(s)
			if j == len(segs)-1 {
				k.field = i
				break
			}
			if k.node == nil {
				k.node = &pathNode{}
			}
			n = k.node
		}
	}
	var index func(n *pathNode)
	index = func(n *pathNode) {
		if len(n.keys) > linearLookupMax {
			n.index = make(map[string]int, len(n.keys))
			for i, k := range n.keys {
				n.index[k] = i
			}
		}
		for _, k := range n.kids {
			if k.node != nil {
				index(k.node)
			}
		}
	}
	index(root)
	return root
}

// slot holds one field's value for the record being decoded.
type slot struct {
	state uint8 // slotAbsent, slotNull or slotSet
	i     int64 // int64, bool (0/1) and timestamps (micros)
	f     float64
	s     []byte // points into the record or into Decoder.buf
}

const (
	slotAbsent uint8 = iota
	slotNull
	slotSet
)

// DecoderOption configures a Decoder.
type DecoderOption func(*Decoder)

// WithNow replaces the clock used to find event times too far in the future.
func WithNow(now func() time.Time) DecoderOption {
	return func(d *Decoder) { d.now = now }
}

// Decoder turns JSON records into rows of a Batch. It validates strictly in a
// single pass over the bytes (a hand-written scanner, see jsonscan.go) and
// keeps all scratch between calls, so decoding a valid record does not
// allocate. One per goroutine: it is not safe for concurrent use.
//
// JSON rules beyond RFC 8259: unknown keys are ignored (but still validated);
// for duplicate keys the last one wins, also for a nested object, which then
// replaces everything read from the earlier one; nesting deeper than 64 is
// malformed_json. A JSON null counts as absent. An int64 field accepts a
// number only if it is an exact integer, so 87, 87.0 and 8.7e1 are 87 while
// 87.5 is wrong_type; a float64 field accepts any number. A lone surrogate in
// a \u escape cannot become UTF-8 and is invalid_utf8.
type Decoder struct {
	t          *Table
	fields     []fieldPlan
	root       *pathNode
	etIndex    int
	maxFutureU int64
	now        func() time.Time

	slots []slot
	buf   []byte

	// The clock, read once per nowEvery records: reading it for every
	// record was 4% of the ingest path's CPU. A stale reading is earlier
	// than the true time, so it can only reject more; a record it rejects
	// is checked again against a fresh reading, so the outcome is the
	// one a fresh clock gives.
	nowMicros int64
	nowLeft   int

	// inject fills fields from the record's metadata (kafka.columns);
	// empty for most tables, which then pay nothing.
	inject []injectPlan

	// scanner state for the record being decoded
	data   []byte
	pos    int
	synErr *RecordError // syntax problem: decoding stops
	semErr *RecordError // first value problem: scanning goes on to validate the JSON

}

// NewDecoder returns a decoder for t, which must be valid (see Table.Validate).
func NewDecoder(t *Table, opts ...DecoderOption) *Decoder {
	d := &Decoder{
		t:          t,
		root:       buildPaths(t),
		etIndex:    t.eventTimeIndex,
		maxFutureU: t.EventTime.MaxFuture.Microseconds(),
		now:        time.Now,
		slots:      make([]slot, len(t.Fields)),
		buf:        make([]byte, 0, 256),
	}
	d.fields = make([]fieldPlan, len(t.Fields))
	for i := range t.Fields {
		f := &t.Fields[i]
		p := fieldPlan{name: f.Name, nullable: f.Nullable, eventTime: i == t.eventTimeIndex}
		switch f.Type {
		case TypeString:
			p.kind = kindString
		case TypeInt64:
			p.kind = kindInt64
		case TypeFloat64:
			p.kind = kindFloat64
		case TypeBool:
			p.kind = kindBool
		case TypeTimestamp:
			p.kind = kindTimestamp
			p.millis = f.Unit == UnitMillis
			switch f.Format {
			case FormatRFC3339, "":
				p.format = tsRFC3339
			case FormatUnixS:
				p.format = tsUnixS
			case FormatUnixMS:
				p.format = tsUnixMS
			case FormatUnixUS:
				p.format = tsUnixUS
			default:
				p.format = tsLayout
				p.layout = f.Format
			}
		}
		d.fields[i] = p
	}
	if key, ts, headers := t.metaColumns(); key != "" || ts != "" || len(headers) > 0 {
		if i := t.FieldIndex(key); key != "" && i >= 0 {
			d.inject = append(d.inject, injectPlan{field: i, what: injectKey})
		}
		if i := t.FieldIndex(ts); ts != "" && i >= 0 {
			d.inject = append(d.inject, injectPlan{field: i, what: injectTime})
		}
		for h, f := range headers {
			if i := t.FieldIndex(f); i >= 0 {
				d.inject = append(d.inject, injectPlan{field: i, what: injectHeader, header: h})
			}
		}
	}
	for _, o := range opts {
		o(d)
	}
	return d
}

type injectKind uint8

const (
	injectKey injectKind = iota
	injectTime
	injectHeader
)

type injectPlan struct {
	field  int
	what   injectKind
	header string
}

// injectMeta overwrites the mapped fields' slots with the record's metadata.
func (d *Decoder) injectMeta(meta *Meta) *RecordError {
	for _, in := range d.inject {
		s := &d.slots[in.field]
		s.state = slotAbsent
		var v []byte
		switch in.what {
		case injectTime:
			if !meta.Time.IsZero() {
				s.state, s.i = slotSet, meta.Time.UnixMicro()
			}
			continue
		case injectKey:
			if meta.Key == nil {
				continue
			}
			v = meta.Key
		case injectHeader:
			found := false
			for _, h := range meta.Headers {
				if h.Key == in.header {
					v, found = h.Value, true
				}
			}
			if !found {
				continue
			}
		}
		if !utf8.Valid(v) {
			return &RecordError{Reason: ReasonInvalidUTF8, Field: d.fields[in.field].name, Detail: "record metadata is not valid UTF-8"}
		}
		s.state, s.s = slotSet, v
	}
	return nil
}

// Decode validates one record and appends it as one row to b, followed by the
// metadata columns from meta. On any problem it appends nothing and returns a
// *RecordError. It returns the row's event time in microseconds since the
// epoch (UTC), whatever the storage unit of the column.
func (d *Decoder) Decode(b *Batch, value []byte, meta Meta) (eventTimeMicros int64, err error) {
	if b.cols == nil {
		return 0, errors.New("decode: batch was released")
	}
	if b.table != d.t && !sameShape(b.table, d.t) {
		return 0, fmt.Errorf("decode: batch is for table %s, decoder for table %s", b.table.Name, d.t.Name)
	}
	if len(value) > d.t.MaxRecordBytes {
		return 0, &RecordError{Reason: ReasonTooLarge,
			Detail: fmt.Sprintf("record is %d bytes, the limit is %d", len(value), d.t.MaxRecordBytes)}
	}
	if err := d.scan(value); err != nil {
		return 0, err
	}
	if len(d.inject) > 0 {
		if err := d.injectMeta(&meta); err != nil {
			return 0, err
		}
	}
	for i := range d.fields {
		if !d.fields[i].nullable && d.slots[i].state != slotSet {
			detail := "required field is absent"
			if d.slots[i].state == slotNull {
				detail = "required field is null"
			}
			return 0, &RecordError{Reason: ReasonMissingField, Field: d.fields[i].name, Detail: detail}
		}
	}
	et := d.slots[d.etIndex].i
	if et < minEventMicros {
		return 0, &RecordError{Reason: ReasonAbsurdEventTime, Field: d.fields[d.etIndex].name,
			Detail: fmt.Sprintf("event time %s is before 2000-01-01", fmtMicros(et))}
	}
	if et > d.nowMicros+d.maxFutureU || d.nowLeft <= 0 {
		d.nowMicros, d.nowLeft = d.now().UnixMicro(), nowEvery
	}
	d.nowLeft--
	if now := d.nowMicros; et > now+d.maxFutureU {
		return 0, &RecordError{Reason: ReasonAbsurdEventTime, Field: d.fields[d.etIndex].name,
			Detail: fmt.Sprintf("event time %s is more than %s after now (%s)", fmtMicros(et), d.t.EventTime.MaxFuture, fmtMicros(now))}
	}
	if err := d.appendRow(b, meta); err != nil {
		return 0, fmt.Errorf("decode: %w", err)
	}
	return et, nil
}

func fmtMicros(us int64) string {
	return time.UnixMicro(us).UTC().Format(time.RFC3339Nano)
}

// sameShape reports whether rows decoded for a fit a batch built for b.
func sameShape(a, b *Table) bool {
	if a == nil || b == nil || len(a.Fields) != len(b.Fields) {
		return false
	}
	for i := range a.Fields {
		fa, fb := &a.Fields[i], &b.Fields[i]
		if fa.Type != fb.Type || fa.Nullable != fb.Nullable || fa.Unit != fb.Unit {
			return false
		}
	}
	return true
}

func (d *Decoder) appendRow(b *Batch, meta Meta) error {
	n := len(d.fields)
	for i := range d.fields {
		if d.fields[i].kind == kindString && !b.cols[i].fits(len(d.slots[i].s)) {
			return errBatchFull
		}
	}
	if !b.cols[n].fits(len(meta.Source)) || !b.cols[n+1].fits(len(meta.Partition)) {
		return errBatchFull
	}
	row := b.rows
	for _, i := range b.fieldCols {
		s := &d.slots[i]
		c := &b.cols[i]
		if s.state != slotSet {
			c.appendNull(row)
			continue
		}
		switch d.fields[i].kind {
		case kindString:
			c.appendString(row, s.s)
		case kindInt64:
			c.appendInt(row, s.i)
		case kindFloat64:
			c.appendFloat(row, s.f)
		case kindBool:
			c.appendBool(row, s.i != 0)
		case kindTimestamp:
			if d.fields[i].millis {
				c.appendInt(row, timestampMillis(s.i))
			} else {
				c.appendInt(row, s.i)
			}
		}
	}
	if b.kept(n) {
		b.cols[n].appendStringS(row, meta.Source)
	}
	if b.kept(n + 1) {
		b.cols[n+1].appendStringS(row, meta.Partition)
	}
	if b.kept(n + 2) {
		b.cols[n+2].appendInt(row, meta.Offset)
	}
	b.rows++
	return nil
}
