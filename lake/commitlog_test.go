package lake_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/objstore/objstoretest"
)

// commitFixture builds link seq of partition t/kafka:e/0 over [first, next),
// with its object written.
func commitFixture(t *testing.T, b objstore.Bucket, seq, first, next int64) lake.CommitRecord {
	t.Helper()
	key := fmt.Sprintf("t/dt=2024-05-01/hour=13/%d.parquet", first)
	if err := b.Put(t.Context(), key, bytes.NewReader([]byte("p")), 1); err != nil {
		t.Fatal(err)
	}
	return lake.CommitRecord{Table: "t", Source: "kafka:e", Partition: "0", Seq: seq, Kind: lake.LinkData,
		First: lake.PositionOf(first), Next: lake.PositionOf(next), Records: next - first, Writer: "w1",
		Objects: []lake.CommittedObject{{Key: key, Kind: lake.KindRaw, Rows: next - first, Size: 1, Checksum: lake.Checksum([]byte("p"))}}}
}

// openFixture writes the genesis of t/kafka:e/0 at position 0.
func openFixture(t *testing.T, l *lake.CommitLog) {
	t.Helper()
	if _, err := l.Open(t.Context(), "t", "kafka:e", "0", "w1", func(context.Context) (lake.Genesis, error) {
		return lake.Genesis{}, nil
	}); err != nil {
		t.Fatal(err)
	}
}

// A commit whose write landed but whose answer was lost must not turn into
// a conflict with itself.
func TestCommitLostAnswer(t *testing.T) {
	lostOnce := func(h *objstoretest.HookBucket) {
		lost := false
		h.After = func(op, _ string) error {
			if op == "put_if_absent" && !lost {
				lost = true
				return fmt.Errorf("read response: %w", objstore.ErrUnavailable)
			}
			return nil
		}
	}
	t.Run("caller retries the commit", func(t *testing.T) {
		h := objstoretest.NewHookBucket(objstoretest.NewLocal(t))
		l := lake.NewCommitLog(h)
		openFixture(t, l)
		if err := l.Commit(t.Context(), commitFixture(t, h, 1, 0, 10)); err != nil {
			t.Fatal(err)
		}
		lostOnce(h)
		rec := commitFixture(t, h, 2, 10, 20)
		if err := l.Commit(t.Context(), rec); !errors.Is(err, objstore.ErrUnavailable) {
			t.Fatalf("first try: err = %v, want the transient error", err)
		}
		if err := l.Commit(t.Context(), rec); err != nil {
			t.Fatalf("retry of a commit that landed: %v", err)
		}
		if end, _, _ := l.Resume(t.Context(), "t", "kafka:e", "0"); end.Next != lake.PositionOf(20) {
			t.Errorf("resume = %+v, want 20", end)
		}
	})
	t.Run("retrying bucket retries the write", func(t *testing.T) {
		h := objstoretest.NewHookBucket(objstoretest.NewLocal(t))
		l := lake.NewCommitLog(objstore.NewRetrying(h, objstore.RetryPolicy{InitialBackoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond, MaxAttempts: 5}, slog.New(slog.DiscardHandler), nil))
		openFixture(t, l)
		before := h.Count("put_if_absent")
		lostOnce(h)
		if err := l.Commit(t.Context(), commitFixture(t, h, 1, 0, 10)); err != nil {
			t.Fatalf("commit: %v", err)
		}
		if got := h.Count("put_if_absent") - before; got != 2 {
			t.Errorf("%d conditional creates, want 2 (the lost one and the retry)", got)
		}
	})
}

func TestCommitLogTableGarbage(t *testing.T) {
	b := objstoretest.NewLocal(t)
	l := lake.NewCommitLog(b)
	openFixture(t, l)
	if err := l.Commit(t.Context(), commitFixture(t, b, 1, 0, 10)); err != nil {
		t.Fatal(err)
	}
	if err := b.Put(t.Context(), lake.CommitPrefix("t")+"README", bytes.NewReader([]byte("hi")), 2); err != nil {
		t.Fatal(err)
	}
	chains, err := l.Chains(t.Context(), "t")
	if err != nil {
		t.Fatal(err)
	}
	if len(chains) != 1 || len(chains[0].Records) != 2 || len(chains[0].Anomalies) != 1 {
		t.Errorf("chains = %+v, want one chain of two links with one anomaly", chains)
	}
	// A record format from the future stops the reader instead of being
	// skipped, which would make it redo committed work.
	future := []byte(`{"version":3,"table":"t","source":"kafka:e","partition":"0","seq":2}`)
	if err := b.PutIfAbsent(t.Context(), lake.LinkKey("t", "kafka:e", "0", 2), future); err != nil {
		t.Fatal(err)
	}
	if _, _, err := lake.NewCommitLog(b).Resume(t.Context(), "t", "kafka:e", "0"); err == nil {
		t.Error("resume over a newer record version: want an error")
	}
}
