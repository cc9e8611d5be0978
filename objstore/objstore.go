package objstore

import (
	"context"
	"errors"
	"io"
	"time"
)

// ErrNotExist is wrapped by errors from Get and Attributes when no object has
// the key.
var ErrNotExist = errors.New("object does not exist")

// ErrExists is wrapped by errors from PutIfAbsent when an object already has
// the key: another writer won the race.
var ErrExists = errors.New("object already exists")

// ObjectAttrs describes one stored object.
type ObjectAttrs struct {
	Key          string
	Size         int64 // bytes
	LastModified time.Time
	// ETag is the store's version tag of the object's bytes, without quotes,
	// where the store has one (S3); empty on the local store.
	ETag string
}

// BucketReader reads objects. Keys are slash-separated paths relative to the
// bucket (and its configured prefix); they never start with a slash.
type BucketReader interface {
	// Get opens the whole object. The error wraps ErrNotExist if there is none.
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	// GetRange opens length bytes starting at offset (length < 0: to the end).
	GetRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error)
	// Attributes returns the object's size and modification time. The error
	// wraps ErrNotExist if there is none.
	Attributes(ctx context.Context, key string) (ObjectAttrs, error)
	// Iter calls fn for every object whose key starts with prefix, at any depth,
	// in ascending lexical key order. An error from fn stops the walk and is
	// returned.
	Iter(ctx context.Context, prefix string, fn func(ObjectAttrs) error) error
}

// Bucket reads and writes objects. Every write is atomic: a reader sees the
// whole new object or none of it.
type Bucket interface {
	BucketReader
	// Put stores size bytes from r under key, replacing any object there. size
	// may be -1 when unknown.
	Put(ctx context.Context, key string, r io.Reader, size int64) error
	// PutIfAbsent stores data under key only if no object has that key; if one
	// does, it returns an error wrapping ErrExists and changes nothing. Used for
	// commit records, where two writers must never both win.
	PutIfAbsent(ctx context.Context, key string, data []byte) error
	// Delete removes the object; deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// Name says where the bucket is, for logs and `inspect` (never credentials).
	Name() string
}

// IsNotExist reports whether err means the object does not exist.
func IsNotExist(err error) bool { return errors.Is(err, ErrNotExist) }

// IsExists reports whether err means a conditional create lost to an existing object.
func IsExists(err error) bool { return errors.Is(err, ErrExists) }

// afterIterator is a BucketReader that can start a listing after a key.
type afterIterator interface {
	IterAfter(ctx context.Context, prefix, startAfter string, fn func(ObjectAttrs) error) error
}

// IterAfter calls fn, like Iter, for the objects under prefix whose keys
// sort after startAfter. Buckets that can start a listing there (S3's
// StartAfter, the local store, the decorators over them) do, so the cost
// follows what comes after startAfter, not everything under prefix; others
// are listed whole and the earlier keys skipped.
func IterAfter(ctx context.Context, b BucketReader, prefix, startAfter string, fn func(ObjectAttrs) error) error {
	if ai, ok := b.(afterIterator); ok {
		return ai.IterAfter(ctx, prefix, startAfter, fn)
	}
	return b.Iter(ctx, prefix, func(a ObjectAttrs) error {
		if a.Key <= startAfter {
			return nil
		}
		return fn(a)
	})
}
