package ops

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/objstore/objstoretest"
)

// actionLogContract is what the evaluators rely on from the action log, run
// on the local store and on a real S3 server: a firing is created once,
// deliveries are recorded by compare-and-swap, pending markers come and go
// with the status, endpoints are turned off and on.
func actionLogContract(t *testing.T, b objstore.ConditionalBucket) {
	ctx := context.Background()
	l := NewActionLog(b)
	e := testEntry("fir_contract")
	for i, want := range []bool{true, false} {
		created, err := l.Create(ctx, e)
		if err != nil || created != want {
			t.Fatalf("create #%d: created %v, err %v; want %v", i+1, created, err, want)
		}
	}
	if p, err := l.Pending(ctx, "events"); err != nil || len(p) != 1 || p[0] != (PendingRef{"events", "big", "fir_contract"}) {
		t.Fatalf("pending %+v, %v", p, err)
	}
	got, ver, err := l.Get(ctx, "events", "big", "fir_contract")
	if err != nil || got.Position != e.Position || got.Status != StatusPending {
		t.Fatalf("get %+v %v", got, err)
	}
	done := *got
	done.Status, done.Attempts = StatusDelivered, 1
	if err := l.Update(ctx, &done, ver); err != nil {
		t.Fatal(err)
	}
	stale := *got
	stale.Status = StatusDead
	if err := l.Update(ctx, &stale, ver); !errors.Is(err, objstore.ErrChanged) {
		t.Fatalf("update at a stale version: %v, want ErrChanged", err)
	}
	if p, _ := l.Pending(ctx, "events"); len(p) != 0 {
		t.Fatalf("pending after delivery: %+v", p)
	}
	found, _, err := l.Find(ctx, "fir_contract")
	if err != nil || found.Status != StatusDelivered || found.Attempts != 1 {
		t.Fatalf("find %+v %v", found, err)
	}
	if _, _, err := l.Find(ctx, "fir_missing"); !objstore.IsNotExist(err) {
		t.Fatalf("find missing: %v", err)
	}
	if _, err := l.Create(ctx, testEntry("fir_other")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		f    Filter
		want int
	}{{Filter{}, 2}, {Filter{Status: StatusDelivered}, 1}, {Filter{Table: "events", Rule: "big", Status: StatusPending}, 1}, {Filter{Table: "other"}, 0}} {
		if got, err := l.List(ctx, c.f); err != nil || len(got) != c.want {
			t.Fatalf("list %+v: %d entries, %v; want %d", c.f, len(got), err, c.want)
		}
	}
	for _, off := range []bool{true, false, true} {
		if err := l.SetDisabled(ctx, "hook", off, "test", time.Now()); err != nil {
			t.Fatal(err)
		}
		if got, err := l.Disabled(ctx, "hook"); err != nil || got != off {
			t.Fatalf("disabled %v %v, want %v", got, err, off)
		}
	}
}

func TestActionLogLocal(t *testing.T) { actionLogContract(t, objstoretest.NewLocal(t)) }

func TestActionLogS3(t *testing.T) {
	actionLogContract(t, objstoretest.NewS3(t, slog.New(slog.DiscardHandler)))
}
