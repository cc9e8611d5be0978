package aggregate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/go-co-op/gocron/v2"

	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
)

// ErrLocked is returned by Lock when another process holds the lease.
var ErrLocked = errors.New("held by another aggregator")

// ErrFenced is wrapped by errors of writes refused because a newer lease
// holder took over (the key's fence is past the writer's epoch), or another
// writer replaced the object since it was read. Such a write never lands.
var ErrFenced = errors.New("fenced: a newer aggregator has taken over")

// BucketLocker is a gocron distributed locker on the object store itself:
// no extra service to run. Time is cut into lease slots; the first process
// to create a slot's lock object (a conditional create) holds the key for
// that slot, and the slot number is its epoch.
//
// Epochs fence stale holders out. Taking a lease raises the key's fence
// object (a compare-and-swap) to the lease's epoch, and fails if the fence
// is already past it: a process whose clock runs behind cannot take an old
// slot once a newer one was taken. Writers check the fence before each write
// (CheckFence) and write conditionally on what they read, so a holder
// stalled past its slot (GC pause, SIGSTOP) cannot overwrite the work of
// the next one.
//
// A lease may be written under only from its slot's start plus the
// clock-skew margin until the slot's end (Lease.From, Lease.Until, on this
// process's clock): a holder of the previous slot whose clock is behind
// ours by up to the margin has stopped by then.
type BucketLocker struct {
	b     objstore.ConditionalBucket
	lease time.Duration
	skew  time.Duration // margin for clock skew between holders
	owner string
	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration) error

	mu   sync.Mutex
	held map[string]Lease
}

// Lease is this process's hold on a key for one slot.
type Lease struct {
	// Epoch is the slot number: a later holder has a larger epoch, and the
	// key's fence never goes back to a smaller one.
	Epoch int64
	// From and Until bound, on this process's clock, when the holder may
	// write: [From, Until).
	From, Until time.Time
}

// DefaultClockSkew is the clock-skew margin for leases of length lease: a
// quarter of the lease, at most 5s.
func DefaultClockSkew(lease time.Duration) time.Duration { return min(lease/4, 5*time.Second) }

// NewBucketLocker returns a locker whose leases last lease, with the
// default clock-skew margin. owner names this process in the lock objects,
// for operators.
func NewBucketLocker(b objstore.ConditionalBucket, lease time.Duration, owner string) *BucketLocker {
	return &BucketLocker{b: b, lease: lease, skew: DefaultClockSkew(lease), owner: owner,
		now: time.Now, sleep: sleepCtx, held: map[string]Lease{}}
}

var _ gocron.Locker = (*BucketLocker)(nil)

// Lock takes key's lease for the current slot (the next one if the current
// has less than a quarter left), or fails with ErrLocked. The lease may not
// be writable yet: Wait waits for it.
func (l *BucketLocker) Lock(ctx context.Context, key string) (gocron.Lock, error) {
	now := l.now()
	slot := now.UnixNano() / int64(l.lease)
	end := time.Unix(0, (slot+1)*int64(l.lease))
	// A lease with almost nothing left is useless to the job; take the next.
	if end.Sub(now) < l.lease/4 {
		slot++
		end = end.Add(l.lease)
	}
	lease := Lease{Epoch: slot, From: end.Add(-l.lease).Add(l.skew), Until: end}
	objKey := lake.LockKey(safeKey(key), slot)
	body := fmt.Appendf(nil, `{"owner":%q,"epoch":%d,"acquired":%q,"writable_from":%q,"expires":%q}`, l.owner, slot,
		now.UTC().Format(time.RFC3339Nano), lease.From.UTC().Format(time.RFC3339Nano), end.UTC().Format(time.RFC3339Nano))
	if err := l.b.PutIfAbsent(ctx, objKey, body); err != nil {
		if objstore.IsExists(err) {
			return nil, fmt.Errorf("lock %s: %w", key, ErrLocked)
		}
		return nil, fmt.Errorf("lock %s: %w", key, err)
	}
	if err := l.raiseFence(ctx, key, slot); err != nil {
		_ = l.b.Delete(context.WithoutCancel(ctx), objKey)
		if errors.Is(err, ErrFenced) {
			return nil, fmt.Errorf("lock %s: %w: %w", key, ErrLocked, err)
		}
		return nil, fmt.Errorf("lock %s: %w", key, err)
	}
	l.mu.Lock()
	l.held[key] = lease
	l.mu.Unlock()
	l.sweep(ctx, key, slot)
	return &bucketLock{l: l, key: key, objKey: objKey}, nil
}

// Held returns this process's lease on key, and false if it holds none or
// the lease has ended.
func (l *BucketLocker) Held(key string) (Lease, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	lease, ok := l.held[key]
	if !ok || !l.now().Before(lease.Until) {
		return Lease{}, false
	}
	return lease, true
}

// Wait waits until the lease on key is writable and returns it; it fails
// if this process holds no lease on key, or the lease ended meanwhile.
func (l *BucketLocker) Wait(ctx context.Context, key string) (Lease, error) {
	lease, ok := l.Held(key)
	if !ok {
		return Lease{}, fmt.Errorf("lease %s: %w", key, ErrLocked)
	}
	if d := lease.From.Sub(l.now()); d > 0 {
		if err := l.sleep(ctx, d); err != nil {
			return Lease{}, err
		}
	}
	if _, ok := l.Deadline(key); !ok {
		return Lease{}, fmt.Errorf("lease %s ended while waiting for it: %w", key, ErrLocked)
	}
	return lease, nil
}

// Deadline returns when the lease on key ends, and false if this process
// does not hold it or may not write under it now.
func (l *BucketLocker) Deadline(key string) (time.Time, bool) {
	lease, ok := l.Held(key)
	if !ok || l.now().Before(lease.From) {
		return time.Time{}, false
	}
	return lease.Until, true
}

// fence is the content of a key's fence object: the largest epoch that
// took a lease on it.
type fence struct {
	Epoch int64  `json:"epoch"`
	Owner string `json:"owner"`
}

// FenceKey is where the fence of the lock key lives.
func FenceKey(key string) string { return lake.LockFenceKey(safeKey(key)) }

// raiseFence moves key's fence up to epoch, or fails with ErrFenced if it is
// already past it.
func (l *BucketLocker) raiseFence(ctx context.Context, key string, epoch int64) error {
	fk := FenceKey(key)
	body, err := json.Marshal(fence{Epoch: epoch, Owner: l.owner})
	if err != nil {
		return err
	}
	for {
		cur, version, err := l.readFence(ctx, fk)
		switch {
		case objstore.IsNotExist(err):
			err = l.b.PutIfAbsent(ctx, fk, body)
			if objstore.IsExists(err) {
				continue // raced with another holder (or our retried write); read again
			}
			return err
		case err != nil:
			return err
		case cur.Epoch > epoch:
			return fmt.Errorf("%w: epoch %d, fence at %d (%s)", ErrFenced, epoch, cur.Epoch, cur.Owner)
		case cur.Epoch == epoch:
			return nil
		}
		if err := l.b.PutIfMatch(ctx, fk, body, version); !objstore.IsChanged(err) {
			return err
		}
	}
}

func (l *BucketLocker) readFence(ctx context.Context, fk string) (fence, string, error) {
	data, version, err := l.b.GetVersion(ctx, fk)
	if err != nil {
		return fence{}, "", err
	}
	var f fence
	if err := json.Unmarshal(data, &f); err != nil {
		return fence{}, "", fmt.Errorf("fence %s: %w", fk, err)
	}
	return f, version, nil
}

// CheckFence returns an error wrapping ErrFenced if a lease newer than
// epoch was taken on key: the holder of epoch must not write any more.
func (l *BucketLocker) CheckFence(ctx context.Context, key string, epoch int64) error {
	f, _, err := l.readFence(ctx, FenceKey(key))
	if err != nil {
		return fmt.Errorf("check fence of %s: %w", key, err)
	}
	if f.Epoch > epoch {
		return fmt.Errorf("%w: lease %s epoch %d, fence at %d (%s)", ErrFenced, key, epoch, f.Epoch, f.Owner)
	}
	return nil
}

// sweep removes lock objects of slots long past, left by crashed holders.
func (l *BucketLocker) sweep(ctx context.Context, key string, current int64) {
	prefix := lake.LockPrefix(safeKey(key))
	var stale []string
	_ = l.b.Iter(ctx, prefix, func(a objstore.ObjectAttrs) error {
		var slot int64
		if _, err := fmt.Sscanf(strings.TrimPrefix(a.Key, prefix), "%020d.json", &slot); err == nil && slot < current-1 {
			stale = append(stale, a.Key)
		}
		return nil
	})
	for _, k := range stale {
		_ = l.b.Delete(ctx, k)
	}
}

type bucketLock struct {
	l           *BucketLocker
	key, objKey string
}

// Unlock frees the slot so that the next run, here or elsewhere, need not
// wait for it to end. The fence stays: it only ever rises.
func (b *bucketLock) Unlock(ctx context.Context) error {
	b.l.mu.Lock()
	delete(b.l.held, b.key)
	b.l.mu.Unlock()
	return b.l.b.Delete(ctx, b.objKey)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func safeKey(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, s)
}
