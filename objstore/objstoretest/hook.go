package objstoretest

import (
	"context"
	"io"
	"sync"

	"github.com/sluicehq/sluice/objstore"
)

// HookBucket is a real bucket with hooks that can fail calls: before runs
// ahead of the call (a non-nil error is returned instead of calling), after
// runs once the call succeeded (a non-nil error replaces the success: the
// write landed but its answer was lost). IterFailAfter makes the next Iter
// fail after delivering that many objects.
type HookBucket struct {
	objstore.Bucket
	mu            sync.Mutex
	Before        func(op, key string) error
	After         func(op, key string) error
	IterFailAfter int
	IterErr       error
	calls         map[string]int
}

// NewHookBucket wraps b with no hooks set.
func NewHookBucket(b objstore.Bucket) *HookBucket {
	return &HookBucket{Bucket: b, calls: map[string]int{}}
}

func (h *HookBucket) hookBefore(op, key string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls[op]++
	if h.Before != nil {
		return h.Before(op, key)
	}
	return nil
}

func (h *HookBucket) hookAfter(op, key string, err error) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err == nil && h.After != nil {
		return h.After(op, key)
	}
	return err
}

func (h *HookBucket) Count(op string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.calls[op]
}

func (h *HookBucket) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := h.hookBefore("get", key); err != nil {
		return nil, err
	}
	return h.Bucket.Get(ctx, key)
}

func (h *HookBucket) Attributes(ctx context.Context, key string) (objstore.ObjectAttrs, error) {
	if err := h.hookBefore("attributes", key); err != nil {
		return objstore.ObjectAttrs{}, err
	}
	return h.Bucket.Attributes(ctx, key)
}

func (h *HookBucket) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := h.hookBefore("put", key); err != nil {
		return err
	}
	return h.hookAfter("put", key, h.Bucket.Put(ctx, key, r, size))
}

func (h *HookBucket) PutIfAbsent(ctx context.Context, key string, data []byte) error {
	if err := h.hookBefore("put_if_absent", key); err != nil {
		return err
	}
	return h.hookAfter("put_if_absent", key, h.Bucket.PutIfAbsent(ctx, key, data))
}

func (h *HookBucket) Delete(ctx context.Context, key string) error {
	if err := h.hookBefore("delete", key); err != nil {
		return err
	}
	return h.Bucket.Delete(ctx, key)
}

func (h *HookBucket) Iter(ctx context.Context, prefix string, fn func(objstore.ObjectAttrs) error) error {
	return h.IterAfter(ctx, prefix, "", fn)
}

// IterAfter is counted as an "iter" call.
func (h *HookBucket) IterAfter(ctx context.Context, prefix, startAfter string, fn func(objstore.ObjectAttrs) error) error {
	if err := h.hookBefore("iter", prefix); err != nil {
		return err
	}
	h.mu.Lock()
	failAfter, failErr := h.IterFailAfter, h.IterErr
	h.IterFailAfter, h.IterErr = 0, nil
	h.mu.Unlock()
	n := 0
	return objstore.IterAfter(ctx, h.Bucket, prefix, startAfter, func(a objstore.ObjectAttrs) error {
		if failErr != nil && n == failAfter {
			return failErr
		}
		n++
		return fn(a)
	})
}
