package aggregate

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/objstore"
)

func TestBucketLockerOneHolderPerSlot(t *testing.T) {
	b, err := objstore.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Date(2026, 11, 26, 10, 0, 1, 0, time.UTC)
	now := func() time.Time { return clock }
	a := NewBucketLocker(b, time.Minute, "a")
	z := NewBucketLocker(b, time.Minute, "z")
	a.now, z.now = now, now
	ctx := context.Background()

	lock, err := a.Lock(ctx, "aggregate events")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := z.Lock(ctx, "aggregate events"); !errors.Is(err, ErrLocked) {
		t.Fatalf("second holder: err %v, want ErrLocked", err)
	}
	if _, ok := z.Deadline("aggregate events"); ok {
		t.Fatal("the loser must not think it holds the lease")
	}
	if end, ok := a.Deadline("aggregate events"); !ok || !end.Equal(clock.Truncate(time.Minute).Add(time.Minute)) {
		t.Fatalf("deadline %s %v", end, ok)
	}
	if _, err := z.Lock(ctx, "aggregate other"); err != nil {
		t.Fatalf("another key is free: %v", err)
	}
	if err := lock.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := z.Lock(ctx, "aggregate events"); err != nil {
		t.Fatalf("after unlock: %v", err)
	}
	// The next slot is free even if its predecessor's holder vanished.
	clock = clock.Add(time.Minute)
	if _, err := a.Lock(ctx, "aggregate events"); err != nil {
		t.Fatalf("next slot: %v", err)
	}
	if _, ok := z.Deadline("aggregate events"); ok {
		t.Fatal("a lease must end with its slot")
	}
}

func TestBucketLockerRace(t *testing.T) {
	b, err := objstore.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var won atomic.Int32
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := NewBucketLocker(b, time.Hour, string(rune('a'+i)))
			if _, err := l.Lock(context.Background(), "job"); err == nil {
				won.Add(1)
			}
		}()
	}
	wg.Wait()
	if won.Load() != 1 {
		t.Fatalf("%d holders, want exactly 1", won.Load())
	}
}
