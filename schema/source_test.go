package schema

import (
	"strings"
	"testing"
)

func TestTableSources(t *testing.T) {
	const fields = "    event_time: {field: ts}\n    fields: [{name: ts, type: timestamp}]\n"
	cases := []struct {
		name, yaml string
		kind       string
		topic      string
		wantErr    string
	}{
		{name: "default topic", yaml: "  - name: events\n", kind: SourceKafka, topic: "events"},
		{name: "topic shorthand", yaml: "  - name: events\n    topic: clicks\n", kind: SourceKafka, topic: "clicks"},
		{name: "kafka", yaml: "  - name: events\n    kafka: {topic: clicks}\n", kind: SourceKafka, topic: "clicks"},
		{name: "kinesis", yaml: "  - name: events\n    kinesis: {stream: s1}\n", kind: SourceKinesis},
		{name: "inbox", yaml: "  - name: events\n    inbox: {prefix: incoming/events}\n", kind: SourceInbox},
		{name: "http", yaml: "  - name: events\n    http: {}\n", kind: SourceHTTP},
		{name: "two sources", yaml: "  - name: events\n    kafka: {topic: a}\n    kinesis: {stream: s}\n", wantErr: "more than one source (kafka, kinesis)"},
		{name: "topic and kinesis", yaml: "  - name: events\n    topic: a\n    kinesis: {stream: s}\n", wantErr: `names topic "a" and a kinesis source`},
		{name: "topics differ", yaml: "  - name: events\n    topic: a\n    kafka: {topic: b}\n", wantErr: `topic "a" and kafka.topic "b" differ`},
		{name: "no stream", yaml: "  - name: events\n    kinesis: {}\n", wantErr: "kinesis.stream is missing"},
		{name: "no prefix", yaml: "  - name: events\n    inbox: {format: csv}\n", wantErr: "inbox.prefix is missing"},
		{name: "bad format", yaml: "  - name: events\n    inbox: {prefix: in/, format: xml}\n", wantErr: `inbox.format "xml"`},
		{name: "bad compression", yaml: "  - name: events\n    inbox: {prefix: in/, compression: lz4}\n", wantErr: `inbox.compression "lz4"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tables, err := Parse([]byte("tables:\n"+c.yaml+fields), "t.yaml")
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tb := tables[0]
			if got := tb.SourceKind(); got != c.kind {
				t.Fatalf("kind %s, want %s", got, c.kind)
			}
			if tb.Topic != c.topic {
				t.Fatalf("topic %q, want %q", tb.Topic, c.topic)
			}
			if c.kind == SourceInbox && (tb.Inbox.Prefix != "incoming/events/" || tb.Inbox.Format != "jsonl" || tb.Inbox.Compression != "auto") {
				t.Fatalf("inbox defaults: %+v", *tb.Inbox)
			}
			if err := tb.Validate(); err != nil {
				t.Fatalf("validate twice: %v", err)
			}
		})
	}
}
