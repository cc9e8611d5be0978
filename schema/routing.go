package schema

import (
	"errors"
	"fmt"
	"strings"
)

// Several tables may read one Kafka topic: each names a route, the value
// of one JSON field that its records carry, and every record of the topic
// goes to the table whose value it carries. A table with `default: true`
// takes the records no other route takes (no field, another value, not
// JSON); without one, such records become dead letters of the topic's
// first table (in the order tables are declared), with reason unrouted.
// Nothing is dropped silently. Every table keeps its own chains, so each
// is exactly once on its own; the records a table does not take still
// move its chain on (see ingest.Record.Skip).

// Route selects the records of a shared topic that a table takes.
type Route struct {
	// Field is the dot-separated path of the JSON field routed on; every
	// table of a topic routes on the same field. Only string values route.
	Field string `yaml:"field,omitempty"`
	// Equals is the value the table takes.
	Equals string `yaml:"equals,omitempty"`
	// Default takes the records that no other table of the topic takes.
	Default bool `yaml:"default,omitempty"`
}

func (r *Route) validate() error {
	if r.Field == "" {
		return errors.New("field is missing")
	}
	for _, seg := range strings.Split(r.Field, ".") {
		if seg == "" {
			return fmt.Errorf("field %q has an empty path segment", r.Field)
		}
	}
	if r.Equals == "" && !r.Default {
		return errors.New("names neither equals nor default: true")
	}
	if r.Equals != "" && r.Default {
		return errors.New("names both equals and default: true; the default table takes what no other route takes")
	}
	return nil
}

// ReasonUnrouted is the dead-letter reason of a record of a shared topic
// that no table's route takes. It is not a decoding reason, so Reasons
// does not list it.
const ReasonUnrouted Reason = "unrouted"

// KafkaColumns fills declared fields from a Kafka record's metadata rather
// than from its JSON value: the metadata is the truth for those fields
// (their JSON path is not read). Metadata that is absent (no key, no such
// header) leaves the field absent: a field that is not nullable then sends
// the record to the dead letters as missing_field.
type KafkaColumns struct {
	// Key names a string field that gets the record key.
	Key string `yaml:"key,omitempty"`
	// Timestamp names a timestamp field that gets the broker's timestamp
	// (CreateTime or LogAppendTime, as the topic is configured).
	Timestamp string `yaml:"timestamp,omitempty"`
	// Headers maps header names to string fields; with repeated headers
	// the last one wins.
	Headers map[string]string `yaml:"headers,omitempty"`
}

func (c *KafkaColumns) validate(t *Table) error {
	used := map[string]string{}
	check := func(what, field string, want Type) error {
		if field == "" {
			return nil
		}
		i := t.FieldIndex(field)
		if i < 0 {
			return fmt.Errorf("%s: %q is not a field of the table", what, field)
		}
		if got := t.Fields[i].Type; got != want {
			return fmt.Errorf("%s: field %q has type %s, want %s", what, field, got, want)
		}
		if other, dup := used[field]; dup {
			return fmt.Errorf("%s: field %q already gets %s", what, field, other)
		}
		used[field] = what
		return nil
	}
	if err := check("key", c.Key, TypeString); err != nil {
		return err
	}
	if err := check("timestamp", c.Timestamp, TypeTimestamp); err != nil {
		return err
	}
	for h, field := range c.Headers {
		if h == "" {
			return errors.New("headers: empty header name")
		}
		if err := check("header "+h, field, TypeString); err != nil {
			return err
		}
		if field == "" {
			return fmt.Errorf("header %s: no field named", h)
		}
	}
	return nil
}

// KinesisColumns fills declared fields from a Kinesis record's metadata,
// as KafkaColumns does for Kafka.
type KinesisColumns struct {
	// PartitionKey names a string field that gets the partition key.
	PartitionKey string `yaml:"partition_key,omitempty"`
	// Timestamp names a timestamp field that gets the approximate arrival
	// timestamp (set by the stream when it accepted the record).
	Timestamp string `yaml:"timestamp,omitempty"`
}

func (c *KinesisColumns) validate(t *Table) error {
	// The same rules as Kafka's key and timestamp.
	return (&KafkaColumns{Key: c.PartitionKey, Timestamp: c.Timestamp}).validate(t)
}

// metaColumns returns the fields filled from record metadata: the key (a
// Kafka key or a Kinesis partition key), the source timestamp and headers.
func (t *Table) metaColumns() (key, timestamp string, headers map[string]string) {
	switch {
	case t.Kafka != nil && t.Kafka.Columns != nil:
		c := t.Kafka.Columns
		return c.Key, c.Timestamp, c.Headers
	case t.Kinesis != nil && t.Kinesis.Columns != nil:
		return t.Kinesis.Columns.PartitionKey, t.Kinesis.Columns.Timestamp, nil
	}
	return "", "", nil
}

// MapsMetadata reports whether the table fills fields from record
// metadata, so that a source hands it the key and headers.
func (t *Table) MapsMetadata() bool {
	k, ts, h := t.metaColumns()
	return k != "" || ts != "" || len(h) > 0
}

// Header is one record header, as a source hands it to the decoder.
type Header struct {
	Key   string
	Value []byte
}

// Router sends each record of one topic to one of the tables reading it.
// It is not safe for concurrent use (it keeps a scanner's scratch).
type Router struct {
	tables  []*Table
	path    []string
	byValue map[string]int
	def     int      // index of the default table, or -1
	field   *Decoder // reads the routed field: the decoder's scanner, one string field
}

// NewRouter checks that tables (every table reading one topic, in the
// order they are declared) can share it and returns their router. A single
// table without a route takes every record.
func NewRouter(topic string, tables []*Table) (*Router, error) {
	if len(tables) == 0 {
		return nil, fmt.Errorf("topic %q: no tables", topic)
	}
	r := &Router{tables: tables, byValue: map[string]int{}, def: -1}
	if len(tables) == 1 && (tables[0].Kafka == nil || tables[0].Kafka.Route == nil) {
		return r, nil
	}
	var field string
	for i, t := range tables {
		var route *Route
		if t.Kafka != nil {
			route = t.Kafka.Route
		}
		if route == nil {
			names := make([]string, len(tables))
			for j, o := range tables {
				names[j] = o.Name
			}
			return nil, fmt.Errorf("topic %q is read by tables %s: table %q needs a route (kafka.route)", topic, strings.Join(names, ", "), t.Name)
		}
		if field == "" {
			field = route.Field
		} else if route.Field != field {
			return nil, fmt.Errorf("topic %q: table %q routes on field %q, table %q on %q: a topic routes on one field", topic, tables[0].Name, field, t.Name, route.Field)
		}
		switch {
		case route.Default:
			if r.def >= 0 {
				return nil, fmt.Errorf("topic %q: tables %q and %q are both the default route", topic, tables[r.def].Name, t.Name)
			}
			r.def = i
		default:
			if j, dup := r.byValue[route.Equals]; dup {
				return nil, fmt.Errorf("topic %q: tables %q and %q both take %s = %q", topic, tables[j].Name, t.Name, field, route.Equals)
			}
			r.byValue[route.Equals] = i
		}
	}
	r.path = strings.Split(field, ".")
	r.field = fieldReader(r.path)
	return r, nil
}

// fieldReader is a decoder of a single nullable string field at path, for
// the scanner alone: it validates the record in one pass without
// allocating, as decoding does.
func fieldReader(path []string) *Decoder {
	root := &pathNode{}
	n := root
	for j, seg := range path {
		n.fields = append(n.fields, 0)
		k := n.child(seg)
		if j == len(path)-1 {
			k.field = 0
			break
		}
		k.node = &pathNode{}
		n = k.node
	}
	return &Decoder{
		fields: []fieldPlan{{name: strings.Join(path, "."), kind: kindString, nullable: true}},
		root:   root,
		slots:  make([]slot, 1),
		buf:    make([]byte, 0, 256),
	}
}

// Routed reports whether records are routed at all (more than a single
// table taking everything).
func (r *Router) Routed() bool { return r.path != nil }

// Tables returns the tables in routing order.
func (r *Router) Tables() []*Table { return r.tables }

// Route returns the index of the table that takes value, or -1 and why no
// table takes it. It scans the record once more (as the decoder does),
// which costs only topics whose tables route.
func (r *Router) Route(value []byte) (int, string) {
	if r.path == nil {
		return 0, ""
	}
	err := r.field.scan(value)
	sl := r.field.slots[0]
	if err == nil && sl.state == slotSet {
		if i, ok := r.byValue[string(sl.s)]; ok {
			return i, ""
		}
	}
	if r.def >= 0 {
		return r.def, ""
	}
	name := r.field.fields[0].name
	switch {
	case err != nil:
		return -1, fmt.Sprintf("%s (routing on field %s)", err.Error(), name)
	case sl.state != slotSet:
		return -1, "field " + name + " is absent or null"
	}
	return -1, fmt.Sprintf("field %s is %q, which no table's route takes", name, sl.s)
}
