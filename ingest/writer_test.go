package ingest_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/ingest"
	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/internal/testkit/ingesttest"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/objstore/objstoretest"
)

// A flush whose dead-letter upload fails must fail as a whole: a commit
// record naming an object that was never written would lose the bad
// records (and make every reader of the link fail).
func TestDeadLetterUploadFailureFailsTheFlush(t *testing.T) {
	h := objstoretest.NewHookBucket(objstoretest.NewLocal(t))
	h.Before = func(op, key string) error {
		if op == "put" && strings.HasPrefix(key, lake.DeadLetterRoot) {
			return errors.New("injected: dead-letter upload fails")
		}
		return nil
	}
	w, err := ingest.NewWriter(ingest.WriterConfig{}, h, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ctx := context.Background()
	p, _, err := w.OpenPartition(ctx, testkit.SampleTable(t), "kafka:events", "0", ingest.StartAt(lake.Position{}, "t"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ts := time.Now().UTC().Add(-time.Hour)
	p.Append([]byte(`{"ts":"`+ts.Format(time.RFC3339Nano)+`","event_id":"e1","user_id":"u","event_type":"click","amount":1,"latency_ms":1,"ok":true}`), lake.PositionOf(0), ts)
	p.Append([]byte(`{"ts":`), lake.PositionOf(1), ts) // a dead letter
	r, failed := ingesttest.Flush(ctx, t, p)
	if r.Err == nil {
		t.Fatal("the flush succeeded although its dead letters were not uploaded")
	}
	if !failed {
		t.Error("the failure did not ask for a rewind")
	}
	chain, err := lake.NewCommitLog(h).Chain(ctx, "events", "kafka:events", "0")
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range chain.Records {
		for _, o := range rec.Objects {
			if _, err := h.Attributes(ctx, o.Key); objstore.IsNotExist(err) {
				t.Errorf("link %d names %s, which does not exist", rec.Seq, o.Key)
			}
		}
		if rec.Kind == lake.LinkData {
			t.Errorf("link %d was committed without its dead letters", rec.Seq)
		}
	}
}

// A record's place in its source file goes into its dead letter; a
// record without one (a stream's) gets no file fields at all.
func TestDeadLetterCarriesTheFileLocation(t *testing.T) {
	b := objstoretest.NewLocal(t)
	w, err := ingest.NewWriter(ingest.WriterConfig{}, b, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ctx := context.Background()
	p, _, err := w.OpenPartition(ctx, testkit.SampleTable(t), "inbox:events", "f", ingest.StartAt(lake.Position{}, "t"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ts := time.Now().UTC().Add(-time.Hour)
	p.Append([]byte(`{"ts":`), lake.PositionOf(0), ts)
	p.AppendRecord(&ingest.Record{Value: []byte(`{"ts":1`), Pos: lake.PositionOf(1), Time: ts,
		At: ingest.Location{File: "in/a.jsonl", Offset: 120, Line: 7, Row: -1}})
	p.AppendRecord(&ingest.Record{Value: []byte(`{"ts":2`), Pos: lake.PositionOf(2), Time: ts,
		At: ingest.Location{File: "in/b.parquet", Offset: -1, Row: 0}})
	if r, _ := ingesttest.Flush(ctx, t, p); r.Err != nil {
		t.Fatal(r.Err)
	}
	dead, err := lake.NewCommitLog(b).LiveDeadLetters(ctx, "events")
	if err != nil || len(dead) != 1 {
		t.Fatalf("dead-letter objects %v, %v; want 1", dead, err)
	}
	rc, err := b.Get(ctx, dead[0].Key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var got []map[string]any
	dec := json.NewDecoder(rc)
	for dec.More() {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			t.Fatal(err)
		}
		got = append(got, m)
	}
	if len(got) != 3 {
		t.Fatalf("%d dead letters, want 3", len(got))
	}
	fileFields := func(m map[string]any) map[string]any {
		out := map[string]any{}
		for _, k := range []string{"file", "file_offset", "file_line", "file_row"} {
			if v, ok := m[k]; ok {
				out[k] = v
			}
		}
		return out
	}
	want := []map[string]any{
		{},
		{"file": "in/a.jsonl", "file_offset": 120.0, "file_line": 7.0},
		{"file": "in/b.parquet", "file_row": 0.0},
	}
	for i, m := range got {
		if g := fileFields(m); !reflect.DeepEqual(g, want[i]) {
			t.Errorf("dead letter %d: file fields %v, want %v", i, g, want[i])
		}
	}
}
