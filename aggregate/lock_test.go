package aggregate

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-co-op/gocron/v2"
	"github.com/sluicehq/sluice/objstore/objstoretest"
)

func TestBucketLockerOneHolderPerSlot(t *testing.T) {
	b := objstoretest.NewLocal(t)
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
	// Held at once, writable only after the clock-skew margin.
	if lease, ok := a.Held("aggregate events"); !ok || !lease.From.Equal(clock.Truncate(time.Minute).Add(DefaultClockSkew(time.Minute))) {
		t.Fatalf("lease %+v %v", lease, ok)
	}
	if _, ok := a.Deadline("aggregate events"); ok {
		t.Fatal("writable before the clock-skew margin has passed")
	}
	clock = clock.Add(5 * time.Second)
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
	b := objstoretest.NewLocal(t)
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

// Two lockers whose clocks disagree by less than the clock-skew margin,
// each taking the lease whenever it holds none, some holders stalling
// (never unlocking) and others unlocking at once: at no instant of real
// time may both hold a writable lease on the key.
func TestBucketLockerSkewedClocksNeverOverlap(t *testing.T) {
	const lease = time.Minute
	margin := DefaultClockSkew(lease)
	for _, tc := range []struct {
		name string
		skew time.Duration // z's clock minus a's
	}{
		{"in step", 0},
		{"z ahead", margin * 9 / 10},
		{"z behind", -margin * 9 / 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := objstoretest.NewLocal(t)
			ctx := context.Background()
			real := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
			a := NewBucketLocker(b, lease, "a")
			z := NewBucketLocker(b, lease, "z")
			a.now = func() time.Time { return real }
			z.now = func() time.Time { return real.Add(tc.skew) }
			lockers := []*BucketLocker{a, z}
			locks := make([]gocron.Lock, 2)
			const key = "aggregate events"
			taken, step := 0, lease/40
			for i := range 40 * 12 {
				for j, l := range lockers {
					if _, ok := l.Held(key); ok {
						continue
					}
					if lk, err := l.Lock(ctx, key); err == nil {
						taken++
						locks[j] = lk
					} else if !errors.Is(err, ErrLocked) {
						t.Fatal(err)
					}
				}
				var writable []string
				for j, l := range lockers {
					if end, ok := l.Deadline(key); ok {
						writable = append(writable, fmt.Sprintf("%s (until %s on its clock)", l.owner, end.Format(time.TimeOnly)))
						// Every third lease is given back at once; the others
						// are held to their end, as by a stalled process.
						if i%3 == 0 && locks[j] != nil {
							if err := locks[j].Unlock(ctx); err != nil {
								t.Fatal(err)
							}
							locks[j] = nil
						}
					}
				}
				if len(writable) > 1 {
					t.Fatalf("at %s (real time) both may write: %v", real.Format(time.TimeOnly), writable)
				}
				real = real.Add(step)
			}
			if taken < 12 {
				t.Errorf("only %d leases taken in 12 slots", taken)
			}
		})
	}
}
