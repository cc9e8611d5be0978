package inbox_test

import (
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/sluicehq/sluice/ingest/inbox"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/objstore/objstoretest"
)

// The ledger's fence: of two creates one wins, and a holder whose entry was
// taken over (a newer epoch written) can no longer update it.
func testLedgerFence(t *testing.T, b objstore.Bucket) {
	ctx := t.Context()
	l, err := inbox.NewLedger(b, "ev")
	if err != nil {
		t.Fatal(err)
	}
	e := inbox.Entry{Key: "in/ev/a.jsonl", Version: "v1", Size: 10, State: inbox.StateClaimed, Epoch: 1, Holder: "A", LeaseUntil: time.Now().Add(time.Second)}
	tagA, created, err := l.Create(ctx, e)
	if err != nil || !created {
		t.Fatalf("create: %v %v", created, err)
	}
	if _, created, err := l.Create(ctx, inbox.Entry{Key: e.Key, Version: e.Version, State: inbox.StateClaimed, Epoch: 1, Holder: "B"}); err != nil || created {
		t.Fatalf("a second create won: %v %v", created, err)
	}
	// B takes over (A's lease ran out).
	got, tagB, found, err := l.Get(ctx, e.Key, e.Version)
	if err != nil || !found || got.Holder != "A" {
		t.Fatalf("get: %+v %v %v", got, found, err)
	}
	got.Epoch, got.Holder = 2, "B"
	if _, err := l.Update(ctx, got, tagB); err != nil {
		t.Fatalf("takeover: %v", err)
	}
	// A, not knowing, writes progress with the version it last wrote.
	e.Splits = []inbox.Split{{Index: 0, Done: true}}
	if _, err := l.Update(ctx, e, tagA); !errors.Is(err, inbox.ErrLostClaim) {
		t.Fatalf("the old holder's update: %v, want ErrLostClaim", err)
	}
	now, _, _, _ := l.Get(ctx, e.Key, e.Version)
	if now.Holder != "B" || now.Epoch != 2 || len(now.Splits) != 0 {
		t.Errorf("entry after the fenced write: %+v", now)
	}
	var open []string
	if err := l.Open(ctx, func(k, _ string) error { open = append(open, k); return nil }); err != nil || len(open) != 1 {
		t.Errorf("open markers: %v %v", open, err)
	}
}

func TestLedgerFenceLocal(t *testing.T) { testLedgerFence(t, objstoretest.NewLocal(t)) }

func TestLedgerFenceS3(t *testing.T) {
	testLedgerFence(t, objstoretest.NewS3(t, slog.New(slog.DiscardHandler)))
}
