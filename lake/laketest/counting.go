package laketest

import (
	"context"
	"io"
	"sync"

	"github.com/sluicehq/sluice/objstore"
)

// CountingBucket is a real conditional bucket that counts the requests made
// to it: "list" (Iter and IterAfter: one listing each, which on S3 is one
// ListObjectsV2 request when the caller stops within the first page),
// "get" (Get, GetRange, GetVersion), "head" (Attributes), "put" (Put,
// PutIfAbsent, PutIfMatch) and "delete".
type CountingBucket struct {
	objstore.ConditionalBucket
	mu    sync.Mutex
	calls map[string]int
}

// NewCountingBucket wraps b with every count at zero.
func NewCountingBucket(b objstore.ConditionalBucket) *CountingBucket {
	return &CountingBucket{ConditionalBucket: b, calls: map[string]int{}}
}

func (c *CountingBucket) count(op string) {
	c.mu.Lock()
	c.calls[op]++
	c.mu.Unlock()
}

// Count returns how many requests of kind op were made.
func (c *CountingBucket) Count(op string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[op]
}

// Counts returns every count and sets them to zero.
func (c *CountingBucket) Counts() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.calls
	c.calls = map[string]int{}
	return out
}

func (c *CountingBucket) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	c.count("get")
	return c.ConditionalBucket.Get(ctx, key)
}

func (c *CountingBucket) GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	c.count("get")
	return c.ConditionalBucket.GetRange(ctx, key, off, n)
}

func (c *CountingBucket) GetVersion(ctx context.Context, key string) ([]byte, string, error) {
	c.count("get")
	return c.ConditionalBucket.GetVersion(ctx, key)
}

func (c *CountingBucket) Attributes(ctx context.Context, key string) (objstore.ObjectAttrs, error) {
	c.count("head")
	return c.ConditionalBucket.Attributes(ctx, key)
}

func (c *CountingBucket) Iter(ctx context.Context, prefix string, fn func(objstore.ObjectAttrs) error) error {
	c.count("list")
	return c.ConditionalBucket.Iter(ctx, prefix, fn)
}

// IterAfter keeps the wrapped bucket's StartAfter listing.
func (c *CountingBucket) IterAfter(ctx context.Context, prefix, startAfter string, fn func(objstore.ObjectAttrs) error) error {
	c.count("list")
	return objstore.IterAfter(ctx, c.ConditionalBucket, prefix, startAfter, fn)
}

func (c *CountingBucket) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	c.count("put")
	return c.ConditionalBucket.Put(ctx, key, r, size)
}

func (c *CountingBucket) PutIfAbsent(ctx context.Context, key string, data []byte) error {
	c.count("put")
	return c.ConditionalBucket.PutIfAbsent(ctx, key, data)
}

func (c *CountingBucket) PutIfMatch(ctx context.Context, key string, data []byte, version string) error {
	c.count("put")
	return c.ConditionalBucket.PutIfMatch(ctx, key, data, version)
}

func (c *CountingBucket) Delete(ctx context.Context, key string) error {
	c.count("delete")
	return c.ConditionalBucket.Delete(ctx, key)
}

// Name is the wrapped bucket's.
func (c *CountingBucket) Name() string { return c.ConditionalBucket.Name() }
