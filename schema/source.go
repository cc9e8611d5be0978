package schema

import (
	"errors"
	"fmt"
	"strings"
)

// A table names where its records come from: exactly one of a Kafka topic,
// a Kinesis stream, an inbox of files in an object store, or HTTP only
// (records posted to Sluice's own HTTP ingest and committed straight to
// the lake). A table that names none reads the Kafka topic of its own name,
// as before sources were declared; the older `topic: x` is the same as
// `kafka: {topic: x}`. Whichever the source, the decoder, dead letters, raw
// layout and aggregators are the same. (HTTP ingest also accepts records
// for a Kafka-backed table: it produces them to the topic.)

// KafkaSource reads a Kafka topic.
type KafkaSource struct {
	Topic string `yaml:"topic"`
	// Route makes the table take only some records of the topic: several
	// tables may then share one topic (see routing.go).
	Route *Route `yaml:"route,omitempty"`
	// Columns fills declared fields from the record's metadata.
	Columns *KafkaColumns `yaml:"columns,omitempty"`
}

// KinesisSource reads a Kinesis (or Kinesis-compatible) stream.
type KinesisSource struct {
	Stream string `yaml:"stream"`
	// Columns fills declared fields from the record's metadata.
	Columns *KinesisColumns `yaml:"columns,omitempty"`
}

// InboxSource reads files dropped under a prefix of an object store.
type InboxSource struct {
	// Store names the store holding the inbox; empty means the lake's.
	Store string `yaml:"store,omitempty"`
	// Prefix is the key prefix files are dropped under, e.g. incoming/events/.
	Prefix string `yaml:"prefix"`
	// Format is jsonl (default), csv or parquet.
	Format string `yaml:"format,omitempty"`
	// Compression is auto (default: by extension and magic bytes), none, gzip or zstd.
	Compression string `yaml:"compression,omitempty"`
}

// HTTPSource marks a table fed only by Sluice's HTTP ingest.
type HTTPSource struct{}

// Source kinds, as they prefix a chain's source name ("kafka:events").
const (
	SourceKafka   = "kafka"
	SourceKinesis = "kinesis"
	SourceInbox   = "inbox"
	SourceHTTP    = "http"
)

// Inbox formats and compressions.
var (
	InboxFormats      = []string{"jsonl", "csv", "parquet"}
	InboxCompressions = []string{"auto", "none", "gzip", "zstd"}
)

// SourceKind returns the kind of source the table reads.
func (t *Table) SourceKind() string {
	switch {
	case t.Kinesis != nil:
		return SourceKinesis
	case t.Inbox != nil:
		return SourceInbox
	case t.HTTP != nil:
		return SourceHTTP
	}
	return SourceKafka
}

// validateSource applies the default source and checks that exactly one is named.
func (t *Table) validateSource() error {
	var named []string
	if t.Kafka != nil {
		named = append(named, SourceKafka)
	}
	if t.Kinesis != nil {
		named = append(named, SourceKinesis)
	}
	if t.Inbox != nil {
		named = append(named, SourceInbox)
	}
	if t.HTTP != nil {
		named = append(named, SourceHTTP)
	}
	if len(named) > 1 {
		return fmt.Errorf("names more than one source (%s): a table reads exactly one", strings.Join(named, ", "))
	}
	if t.Topic != "" && len(named) == 1 && named[0] != SourceKafka {
		return fmt.Errorf("names topic %q and a %s source: a table reads exactly one", t.Topic, named[0])
	}
	switch t.SourceKind() {
	case SourceKafka:
		if t.Kafka == nil {
			t.Kafka = &KafkaSource{Topic: t.Topic}
		}
		if t.Topic != "" && t.Kafka.Topic != "" && t.Topic != t.Kafka.Topic {
			return fmt.Errorf("topic %q and kafka.topic %q differ", t.Topic, t.Kafka.Topic)
		}
		if t.Kafka.Topic == "" {
			t.Kafka.Topic = t.Topic
		}
		if t.Kafka.Topic == "" {
			t.Kafka.Topic = t.Name
		}
		t.Topic = t.Kafka.Topic
		if r := t.Kafka.Route; r != nil {
			if err := r.validate(); err != nil {
				return fmt.Errorf("kafka.route: %w", err)
			}
		}
	case SourceKinesis:
		if t.Kinesis.Stream == "" {
			return errors.New("kinesis.stream is missing")
		}
	case SourceInbox:
		in := t.Inbox
		if in.Prefix == "" {
			return errors.New("inbox.prefix is missing")
		}
		if !strings.HasSuffix(in.Prefix, "/") {
			in.Prefix += "/"
		}
		if in.Format == "" {
			in.Format = "jsonl"
		}
		if !oneOf(in.Format, InboxFormats) {
			return fmt.Errorf("inbox.format %q is not one of %s", in.Format, strings.Join(InboxFormats, ", "))
		}
		if in.Compression == "" {
			in.Compression = "auto"
		}
		if !oneOf(in.Compression, InboxCompressions) {
			return fmt.Errorf("inbox.compression %q is not one of %s", in.Compression, strings.Join(InboxCompressions, ", "))
		}
	}
	return nil
}

func oneOf(s string, set []string) bool {
	for _, x := range set {
		if s == x {
			return true
		}
	}
	return false
}
