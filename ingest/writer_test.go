package ingest_test

import (
	"context"
	"errors"
	"log/slog"
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
