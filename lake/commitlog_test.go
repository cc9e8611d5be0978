package lake_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/objstore/objstoretest"
)

func commitFixture(t *testing.T, b objstore.Bucket, first, next int64) lake.CommitRecord {
	t.Helper()
	key := fmt.Sprintf("t/dt=2024-05-01/hour=13/%d.parquet", first)
	if err := b.Put(t.Context(), key, bytes.NewReader([]byte("p")), 1); err != nil {
		t.Fatal(err)
	}
	return lake.CommitRecord{Table: "t", Source: "kafka:e", Partition: "0", FirstOffset: first, NextOffset: next,
		Records: next - first, Writer: "w1",
		Objects: []lake.CommittedObject{{Key: key, Kind: lake.KindRaw, Rows: next - first, Size: 1}}}
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
		if err := l.Commit(t.Context(), commitFixture(t, h, 0, 10)); err != nil {
			t.Fatal(err)
		}
		lostOnce(h)
		rec := commitFixture(t, h, 10, 20)
		if err := l.Commit(t.Context(), rec); !errors.Is(err, objstore.ErrUnavailable) {
			t.Fatalf("first try: err = %v, want the transient error", err)
		}
		if err := l.Commit(t.Context(), rec); err != nil {
			t.Fatalf("retry of a commit that landed: %v", err)
		}
		if next, _, _ := l.Resume(t.Context(), "t", "kafka:e", "0"); next != 20 {
			t.Errorf("resume = %d, want 20", next)
		}
	})
	t.Run("retrying bucket retries the write", func(t *testing.T) {
		h := objstoretest.NewHookBucket(objstoretest.NewLocal(t))
		l := lake.NewCommitLog(objstore.NewRetrying(h, objstore.RetryPolicy{InitialBackoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond, MaxAttempts: 5}, slog.New(slog.DiscardHandler), nil))
		lostOnce(h)
		if err := l.Commit(t.Context(), commitFixture(t, h, 0, 10)); err != nil {
			t.Fatalf("commit: %v", err)
		}
		if got := h.Count("put_if_absent"); got != 2 {
			t.Errorf("%d conditional creates, want 2 (the lost one and the retry)", got)
		}
	})
}

func TestCommitLogTableGarbage(t *testing.T) {
	b := objstoretest.NewLocal(t)
	l := lake.NewCommitLog(b)
	if err := l.Commit(t.Context(), commitFixture(t, b, 0, 10)); err != nil {
		t.Fatal(err)
	}
	if err := b.Put(t.Context(), lake.CommitPrefix("t")+"README", bytes.NewReader([]byte("hi")), 2); err != nil {
		t.Fatal(err)
	}
	chains, err := l.Chains(t.Context(), "t")
	if err != nil {
		t.Fatal(err)
	}
	if len(chains) != 1 || len(chains[0].Records) != 1 || len(chains[0].Anomalies) != 1 {
		t.Errorf("chains = %+v, want one chain of one record with one anomaly", chains)
	}
	// A record format from the future stops the reader instead of being
	// skipped, which would make it redo committed work.
	future := []byte(`{"version":2,"table":"t","source":"kafka:e","partition":"0","first_offset":10,"next_offset":20}`)
	if err := b.PutIfAbsent(t.Context(), lake.CommitKey("t", "kafka:e", "0", 10), future); err != nil {
		t.Fatal(err)
	}
	if _, _, err := lake.NewCommitLog(b).Resume(t.Context(), "t", "kafka:e", "0"); err == nil {
		t.Error("resume over a newer record version: want an error")
	}
}
