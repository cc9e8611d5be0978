package schema

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Type is the logical type of a table field.
type Type string

// Field types. Every one maps to exactly one Arrow and one Parquet type.
const (
	TypeString    Type = "string"
	TypeInt64     Type = "int64"
	TypeFloat64   Type = "float64"
	TypeBool      Type = "bool"
	TypeTimestamp Type = "timestamp"
)

// Timestamp formats understood by the decoder. Any other format string must be
// a Go time layout (see time.Parse); such values are parsed as UTC unless the
// layout carries a zone.
const (
	FormatRFC3339 = "rfc3339"
	FormatUnixS   = "unix_s"
	FormatUnixMS  = "unix_ms"
	FormatUnixUS  = "unix_us"
)

// Timestamp storage units in Arrow and Parquet. Nanoseconds are deliberately
// not offered: several query engines read them badly and they overflow int64
// past the year 2262.
const (
	UnitMicros = "micros"
	UnitMillis = "millis"
)

// Defaults applied by Parse when a key is omitted.
const (
	DefaultMaxRecordBytes = 1 << 20
	DefaultMaxFuture      = 24 * time.Hour
	// maxRecordBytesLimit keeps one record well inside any sane memory budget.
	maxRecordBytesLimit = 64 << 20
	// maxPathDepth bounds nested paths so the decoder's nesting limit is never
	// the reason a correct record is rejected.
	maxPathDepth = 16
	maxNameLen   = 128
)

// Metadata column names appended after a table's own fields in every raw row.
const (
	ColSource    = "_source"
	ColPartition = "_partition"
	ColOffset    = "_offset"
)

// Table is one table definition. Tables returned by Parse, Load and
// SampleTables are validated and have their defaults applied; treat them as
// read-only, since decoders and schemas derived from them are cached by
// nobody and rebuilt from these fields.
type Table struct {
	Name string `yaml:"name"`
	// Topic is the Kafka topic of a Kafka-fed table (see source.go); the
	// same as Kafka.Topic once validated, empty for other sources.
	Topic   string         `yaml:"topic,omitempty"`
	Kafka   *KafkaSource   `yaml:"kafka,omitempty"`
	Kinesis *KinesisSource `yaml:"kinesis,omitempty"`
	Inbox   *InboxSource   `yaml:"inbox,omitempty"`
	HTTP    *HTTPSource    `yaml:"http,omitempty"`

	MaxRecordBytes int       `yaml:"max_record_bytes"`
	EventTime      EventTime `yaml:"event_time"`
	Fields         []Field   `yaml:"fields"`
	// Rollup, if set, says how the table is summarised into windows.
	Rollup *Rollup `yaml:"rollup,omitempty"`
	// Retention, if set, says how long raw data and summaries are kept.
	Retention *Retention `yaml:"retention,omitempty"`

	eventTimeIndex int
}

// EventTime names the field that places a record in time.
type EventTime struct {
	Field string `yaml:"field"`
	// MaxFuture is how far past "now" an event time may lie before the record
	// counts as absurd (clock skew allowance).
	MaxFuture time.Duration `yaml:"max_future"`
}

// Field is one column of a table.
type Field struct {
	Name string `yaml:"name"`
	Type Type   `yaml:"type"`
	// Format applies to timestamps only: rfc3339, unix_s, unix_ms, unix_us or a Go layout.
	Format string `yaml:"format,omitempty"`
	// Unit applies to timestamps only: micros (default) or millis.
	Unit     string `yaml:"unit,omitempty"`
	Nullable bool   `yaml:"nullable,omitempty"`
	// Path is the dot-separated chain of JSON object keys that holds the value;
	// it defaults to Name. Keys containing dots cannot be addressed.
	Path string `yaml:"path,omitempty"`
}

// EventTimeIndex is the index in Fields of the event-time field.
func (t *Table) EventTimeIndex() int { return t.eventTimeIndex }

// FieldIndex returns the index of the named field, or -1.
func (t *Table) FieldIndex(name string) int {
	for i := range t.Fields {
		if t.Fields[i].Name == name {
			return i
		}
	}
	return -1
}

// PathSegments returns the JSON object keys leading to the field's value.
func (f *Field) PathSegments() []string {
	if f.Path == "" {
		return []string{f.Name}
	}
	return strings.Split(f.Path, ".")
}

type tablesFile struct {
	Tables []*Table `yaml:"tables"`
}

// Load reads and validates the table definitions in the file at path.
func Load(path string) ([]*Table, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load tables: %w", err)
	}
	return Parse(data, path)
}

// Parse decodes and validates table definitions. Unknown keys are errors, so a
// typo cannot silently drop a setting. filename only labels error messages.
func Parse(data []byte, filename string) ([]*Table, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f tablesFile
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: no tables defined", filename)
		}
		return nil, fmt.Errorf("%s: %s", filename, cleanYAMLError(err))
	}
	// A second document in the same file would be silently ignored otherwise.
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, fmt.Errorf("%s: more than one YAML document; put all tables under one tables: list", filename)
	} else if !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: %s", filename, cleanYAMLError(err))
	}
	if len(f.Tables) == 0 {
		return nil, fmt.Errorf("%s: no tables defined", filename)
	}
	seen := make(map[string]bool, len(f.Tables))
	for i, t := range f.Tables {
		if t == nil {
			return nil, fmt.Errorf("%s: table #%d is empty", filename, i+1)
		}
		if err := t.Validate(); err != nil {
			return nil, fmt.Errorf("%s: %w", filename, err)
		}
		if seen[t.Name] {
			return nil, fmt.Errorf("%s: table %q: defined more than once", filename, t.Name)
		}
		seen[t.Name] = true
	}
	return f.Tables, nil
}

var yamlUnknownField = regexp.MustCompile(`field (\S+) not found in type \S+`)

// cleanYAMLError turns yaml.v3's Go-type-centric messages into ones that talk
// about the file.
func cleanYAMLError(err error) string {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs := make([]string, len(te.Errors))
		for i, m := range te.Errors {
			m = yamlUnknownField.ReplaceAllString(m, `unknown key "$1"`)
			if strings.HasSuffix(m, `unknown key "rollups"`) {
				m += `: use rollup: (singular), one per table, listing its windows, dimensions and measures`
			}
			m = strings.ReplaceAll(m, "cannot unmarshal !!", "cannot use !!")
			msgs[i] = m
		}
		return strings.Join(msgs, "; ")
	}
	return strings.TrimPrefix(err.Error(), "yaml: ")
}

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

func checkName(kind, name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%s name is missing", kind)
	case strings.HasPrefix(name, "_"):
		return fmt.Errorf("%s name %q is reserved: names starting with _ are for metadata columns", kind, name)
	case len(name) > maxNameLen:
		return fmt.Errorf("%s name %q is longer than %d characters", kind, name, maxNameLen)
	case !nameRE.MatchString(name):
		return fmt.Errorf("%s name %q is invalid: use lower-case letters, digits and _, starting with a letter", kind, name)
	}
	return nil
}

// Validate applies defaults and checks the table. Parse and Load call it;
// call it yourself on a Table built in code before deriving schemas or
// decoders from it. It is idempotent.
func (t *Table) Validate() error {
	if err := checkName("table", t.Name); err != nil {
		return err
	}
	wrap := func(err error) error { return fmt.Errorf("table %q: %w", t.Name, err) }
	if err := t.validateSource(); err != nil {
		return wrap(err)
	}
	switch {
	case t.MaxRecordBytes == 0:
		t.MaxRecordBytes = DefaultMaxRecordBytes
	case t.MaxRecordBytes < 0:
		return wrap(fmt.Errorf("max_record_bytes must be positive, got %d", t.MaxRecordBytes))
	case t.MaxRecordBytes > maxRecordBytesLimit:
		return wrap(fmt.Errorf("max_record_bytes %d is above the limit of %d", t.MaxRecordBytes, maxRecordBytesLimit))
	}
	if err := t.validateFields(); err != nil {
		return wrap(err)
	}
	if err := t.validateEventTimeField(); err != nil {
		return wrap(err)
	}
	if t.Kafka != nil && t.Kafka.Columns != nil {
		if err := t.Kafka.Columns.validate(t); err != nil {
			return wrap(fmt.Errorf("kafka.columns: %w", err))
		}
	}
	if t.Kinesis != nil && t.Kinesis.Columns != nil {
		if err := t.Kinesis.Columns.validate(t); err != nil {
			return wrap(fmt.Errorf("kinesis.columns: %w", err))
		}
	}
	switch {
	case t.EventTime.MaxFuture == 0:
		t.EventTime.MaxFuture = DefaultMaxFuture
	case t.EventTime.MaxFuture < 0:
		return wrap(fmt.Errorf("event_time.max_future must be positive, got %s", t.EventTime.MaxFuture))
	}
	if t.Rollup != nil {
		if err := t.Rollup.validate(t); err != nil {
			return wrap(err)
		}
	}
	if t.Retention != nil {
		if err := t.Retention.validate(t); err != nil {
			return wrap(err)
		}
	}
	return nil
}

// validateFields checks the fields: valid names, each once, and paths
// that neither repeat nor nest in one another.
func (t *Table) validateFields() error {
	if len(t.Fields) == 0 {
		return errors.New("no fields defined")
	}
	names := make(map[string]bool, len(t.Fields))
	paths := make(map[string]string, len(t.Fields))
	for i := range t.Fields {
		f := &t.Fields[i]
		if err := checkName("field", f.Name); err != nil {
			if f.Name != "" {
				return fmt.Errorf("field %q: %w", f.Name, err)
			}
			return fmt.Errorf("field #%d: %w", i+1, err)
		}
		if names[f.Name] {
			return fmt.Errorf("field %q: defined more than once", f.Name)
		}
		names[f.Name] = true
		if err := f.validate(); err != nil {
			return fmt.Errorf("field %q: %w", f.Name, err)
		}
		p := strings.Join(f.PathSegments(), ".")
		if other, ok := paths[p]; ok {
			return fmt.Errorf("field %q: path %q is already used by field %q", f.Name, p, other)
		}
		paths[p] = f.Name
	}
	// A value cannot be both a leaf and an object holding other fields.
	for i := range t.Fields {
		p := strings.Join(t.Fields[i].PathSegments(), ".")
		for j := range t.Fields {
			if q := strings.Join(t.Fields[j].PathSegments(), "."); strings.HasPrefix(q, p+".") {
				return fmt.Errorf("field %q: path %q is a prefix of field %q's path %q", t.Fields[i].Name, p, t.Fields[j].Name, q)
			}
		}
	}
	return nil
}

// validateEventTimeField checks that event_time.field names a timestamp
// field that is never null, and remembers its index.
func (t *Table) validateEventTimeField() error {
	if t.EventTime.Field == "" {
		return errors.New("event_time.field is missing")
	}
	idx := t.FieldIndex(t.EventTime.Field)
	if idx < 0 {
		return fmt.Errorf("event_time.field %q is not a field of the table", t.EventTime.Field)
	}
	if et := t.Fields[idx]; et.Type != TypeTimestamp {
		return fmt.Errorf("event_time.field %q has type %s, want timestamp", et.Name, et.Type)
	} else if et.Nullable {
		return fmt.Errorf("event_time.field %q must not be nullable: every row needs an event time", et.Name)
	}
	t.eventTimeIndex = idx
	return nil
}

func (f *Field) validate() error {
	switch f.Type {
	case TypeString, TypeInt64, TypeFloat64, TypeBool, TypeTimestamp:
	case "":
		return errors.New("type is missing")
	default:
		return fmt.Errorf("unknown type %q (want string, int64, float64, bool or timestamp)", string(f.Type))
	}
	if f.Type != TypeTimestamp {
		if f.Format != "" {
			return fmt.Errorf("format applies to timestamp fields only, not %s", f.Type)
		}
		if f.Unit != "" {
			return fmt.Errorf("unit applies to timestamp fields only, not %s", f.Type)
		}
	} else {
		if f.Format == "" {
			f.Format = FormatRFC3339
		}
		if err := checkFormat(f.Format); err != nil {
			return err
		}
		switch f.Unit {
		case "":
			f.Unit = UnitMicros
		case UnitMicros, UnitMillis:
		default:
			return fmt.Errorf("unknown unit %q (want micros or millis)", f.Unit)
		}
	}
	if f.Path != "" {
		segs := strings.Split(f.Path, ".")
		if len(segs) > maxPathDepth {
			return fmt.Errorf("path %q is deeper than %d keys", f.Path, maxPathDepth)
		}
		for _, s := range segs {
			if s == "" {
				return fmt.Errorf("bad path %q: empty key (paths are dot-separated object keys)", f.Path)
			}
			if strings.TrimSpace(s) != s {
				return fmt.Errorf("bad path %q: key %q has leading or trailing spaces", f.Path, s)
			}
		}
	}
	return nil
}

// checkFormat accepts the named formats and any Go layout that can carry a
// calendar date. A layout is proven by formatting a reference time with it and
// parsing the result back.
func checkFormat(format string) error {
	switch format {
	case FormatRFC3339, FormatUnixS, FormatUnixMS, FormatUnixUS:
		return nil
	}
	bad := fmt.Errorf("bad format %q: want rfc3339, unix_s, unix_ms, unix_us or a Go time layout with a date such as \"2006-01-02 15:04:05\"", format)
	ref := time.Date(2021, time.February, 3, 4, 5, 6, 0, time.UTC)
	s := ref.Format(format)
	if s == format {
		return bad
	}
	got, err := time.Parse(format, s)
	if err != nil {
		return bad
	}
	if y, m, d := got.Date(); y != 2021 || m != time.February || d != 3 {
		return bad
	}
	return nil
}
