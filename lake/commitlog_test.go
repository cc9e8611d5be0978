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

// An end link closes a chain: readers see it ended (also from a
// checkpoint), nothing may be committed after it, and a link planted after
// it is an anomaly, not part of the chain.
func TestCommitLogEndLink(t *testing.T) {
	b := objstoretest.NewLocal(t)
	l := lake.NewCommitLog(b)
	openFixture(t, l)
	if err := l.Commit(t.Context(), commitFixture(t, b, 1, 0, 10)); err != nil {
		t.Fatal(err)
	}
	if end, _, _ := l.Resume(t.Context(), "t", "kafka:e", "0"); end.Ended {
		t.Fatalf("resume before the end link = %+v, want not ended", end)
	}
	bad := lake.CommitRecord{Table: "t", Source: "kafka:e", Partition: "0", Seq: 2, Kind: lake.LinkEnd,
		First: lake.PositionOf(10), Next: lake.PositionOf(11), Writer: "w1", Objects: []lake.CommittedObject{}}
	if err := l.Commit(t.Context(), bad); !errors.Is(err, lake.ErrInvalidCommit) {
		t.Fatalf("end link covering positions: err = %v, want ErrInvalidCommit", err)
	}
	end := bad
	end.Next = end.First
	if err := l.Commit(t.Context(), end); err != nil {
		t.Fatal(err)
	}
	// A checkpoint taken at the end link says so too (the tail read).
	cp := objstoretest.NewLocal(t)
	lc := lake.NewCommitLog(cp).WithCheckpointEvery(1)
	openFixture(t, lc)
	closing := end
	closing.Seq, closing.First, closing.Next = 1, lake.PositionOf(0), lake.PositionOf(0)
	if err := lc.Commit(t.Context(), closing); err != nil {
		t.Fatal(err)
	}
	if got, _, err := lake.NewCommitLog(cp).Resume(t.Context(), "t", "kafka:e", "0"); err != nil || !got.Ended {
		t.Errorf("resume from a checkpoint at the end link = %+v, %v; want ended", got, err)
	}
	for name, log := range map[string]*lake.CommitLog{"same log": l, "fresh log": lake.NewCommitLog(b)} {
		got, found, err := log.Resume(t.Context(), "t", "kafka:e", "0")
		if err != nil || !found || !got.Ended || got.Seq != 3 || got.Next != lake.PositionOf(10) {
			t.Errorf("%s: resume = %+v, %v, %v; want ended at link 3, position 10", name, got, found, err)
		}
	}
	after := commitFixture(t, b, 3, 10, 20)
	if err := l.Commit(t.Context(), after); !errors.Is(err, lake.ErrCommitConflict) {
		t.Errorf("commit after the end link: err = %v, want a conflict", err)
	}
	// Planted by hand, past the commit log's checks.
	data := fmt.Appendf(nil, `{"version":2,"table":"t","source":"kafka:e","partition":"0","seq":3,"kind":"data","first":"10","next":"20","records":10,"dead_letters":0,"objects":[{"key":%q,"kind":"raw","rows":10,"size":1,"checksum":%q}],"writer":"w2"}`,
		after.Objects[0].Key, after.Objects[0].Checksum)
	if err := b.PutIfAbsent(t.Context(), lake.LinkKey("t", "kafka:e", "0", 3), data); err != nil {
		t.Fatal(err)
	}
	chain, err := lake.NewCommitLog(b).Chain(t.Context(), "t", "kafka:e", "0")
	if err != nil {
		t.Fatal(err)
	}
	if len(chain.Records) != 3 || len(chain.Anomalies) != 1 {
		t.Errorf("chain = %d links, %d anomalies; want 3 links and the planted one as an anomaly", len(chain.Records), len(chain.Anomalies))
	}
	if e, _ := chain.End(); !e.Ended {
		t.Errorf("chain end = %+v, want ended", e)
	}
}
