package sink_test

import (
	"context"
	"io"
	"sync"

	"github.com/sluicehq/sluice/sink"
)

// hookBucket is a real bucket with hooks that can fail calls: before runs
// ahead of the call (a non-nil error is returned instead of calling), after
// runs once the call succeeded (a non-nil error replaces the success: the
// write landed but its answer was lost). iterFailAfter makes the next Iter
// fail after delivering that many objects.
type hookBucket struct {
	sink.Bucket
	mu            sync.Mutex
	before        func(op, key string) error
	after         func(op, key string) error
	iterFailAfter int
	iterErr       error
	calls         map[string]int
}

func newHookBucket(b sink.Bucket) *hookBucket { return &hookBucket{Bucket: b, calls: map[string]int{}} }

func (h *hookBucket) hookBefore(op, key string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls[op]++
	if h.before != nil {
		return h.before(op, key)
	}
	return nil
}

func (h *hookBucket) hookAfter(op, key string, err error) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err == nil && h.after != nil {
		return h.after(op, key)
	}
	return err
}

func (h *hookBucket) count(op string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.calls[op]
}

func (h *hookBucket) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := h.hookBefore("get", key); err != nil {
		return nil, err
	}
	return h.Bucket.Get(ctx, key)
}

func (h *hookBucket) Attributes(ctx context.Context, key string) (sink.ObjectAttrs, error) {
	if err := h.hookBefore("attributes", key); err != nil {
		return sink.ObjectAttrs{}, err
	}
	return h.Bucket.Attributes(ctx, key)
}

func (h *hookBucket) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := h.hookBefore("put", key); err != nil {
		return err
	}
	return h.hookAfter("put", key, h.Bucket.Put(ctx, key, r, size))
}

func (h *hookBucket) PutIfAbsent(ctx context.Context, key string, data []byte) error {
	if err := h.hookBefore("put_if_absent", key); err != nil {
		return err
	}
	return h.hookAfter("put_if_absent", key, h.Bucket.PutIfAbsent(ctx, key, data))
}

func (h *hookBucket) Delete(ctx context.Context, key string) error {
	if err := h.hookBefore("delete", key); err != nil {
		return err
	}
	return h.Bucket.Delete(ctx, key)
}

func (h *hookBucket) Iter(ctx context.Context, prefix string, fn func(sink.ObjectAttrs) error) error {
	if err := h.hookBefore("iter", prefix); err != nil {
		return err
	}
	h.mu.Lock()
	failAfter, failErr := h.iterFailAfter, h.iterErr
	h.iterFailAfter, h.iterErr = 0, nil
	h.mu.Unlock()
	n := 0
	return h.Bucket.Iter(ctx, prefix, func(a sink.ObjectAttrs) error {
		if failErr != nil && n == failAfter {
			return failErr
		}
		n++
		return fn(a)
	})
}
