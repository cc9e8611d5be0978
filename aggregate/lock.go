package aggregate

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/go-co-op/gocron/v2"

	"github.com/sluicehq/sluice/objstore"
)

// LockPrefix is where leases live in the store.
const LockPrefix = "_sluice/locks/"

// ErrLocked is returned by Lock when another process holds the lease.
var ErrLocked = errors.New("held by another aggregator")

// BucketLocker is a gocron distributed locker on the object store itself:
// no extra service to run. Time is cut into lease slots; the first process
// to create a slot's lock object (a conditional create) holds the key until
// the slot ends or it unlocks. A holder must stop writing when its lease
// ends (Deadline tells when), so a process stalled past its slot cannot
// overwrite the work of the next holder.
type BucketLocker struct {
	b     objstore.Bucket
	lease time.Duration
	owner string
	now   func() time.Time

	mu   sync.Mutex
	held map[string]time.Time // key -> lease end
}

// NewBucketLocker returns a locker whose leases last lease. owner names this
// process in the lock objects, for operators.
func NewBucketLocker(b objstore.Bucket, lease time.Duration, owner string) *BucketLocker {
	return &BucketLocker{b: b, lease: lease, owner: owner, now: time.Now, held: map[string]time.Time{}}
}

var _ gocron.Locker = (*BucketLocker)(nil)

// Lock takes key's lease for the current slot, or fails with ErrLocked.
func (l *BucketLocker) Lock(ctx context.Context, key string) (gocron.Lock, error) {
	now := l.now()
	slot := now.UnixNano() / int64(l.lease)
	end := time.Unix(0, (slot+1)*int64(l.lease))
	// A lease with almost nothing left is useless to the job; take the next.
	if end.Sub(now) < l.lease/4 {
		slot++
		end = end.Add(l.lease)
	}
	objKey := fmt.Sprintf("%s%s/%020d.json", LockPrefix, safeKey(key), slot)
	body := fmt.Appendf(nil, `{"owner":%q,"acquired":%q,"expires":%q}`, l.owner, now.UTC().Format(time.RFC3339Nano), end.UTC().Format(time.RFC3339Nano))
	if err := l.b.PutIfAbsent(ctx, objKey, body); err != nil {
		if objstore.IsExists(err) {
			return nil, fmt.Errorf("lock %s: %w", key, ErrLocked)
		}
		return nil, fmt.Errorf("lock %s: %w", key, err)
	}
	l.mu.Lock()
	l.held[key] = end
	l.mu.Unlock()
	l.sweep(ctx, key, slot)
	return &bucketLock{l: l, key: key, objKey: objKey}, nil
}

// Deadline returns when the lease on key ends, and false if this process
// does not hold it.
func (l *BucketLocker) Deadline(key string) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	end, ok := l.held[key]
	if !ok || !l.now().Before(end) {
		return time.Time{}, false
	}
	return end, true
}

// sweep removes lock objects of slots long past, left by crashed holders.
func (l *BucketLocker) sweep(ctx context.Context, key string, current int64) {
	prefix := LockPrefix + safeKey(key) + "/"
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
// wait for it to end.
func (b *bucketLock) Unlock(ctx context.Context) error {
	b.l.mu.Lock()
	delete(b.l.held, b.key)
	b.l.mu.Unlock()
	return b.l.b.Delete(ctx, b.objKey)
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
