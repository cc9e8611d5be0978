package objstoretest

import (
	"fmt"
	"strconv"
	"sync"
	"testing"

	"github.com/sluicehq/sluice/objstore"
)

// ConditionalTest checks the ConditionalBucket contract on b: a replace
// lands only on the version read, and of writers racing from one version
// exactly one wins. It works under the "acc-cas-" prefix.
func ConditionalTest(t *testing.T, b objstore.ConditionalBucket) {
	ctx := t.Context()

	t.Run("replace only the version read", func(t *testing.T) {
		key := "acc-cas-replace/obj"
		if _, _, err := b.GetVersion(ctx, key); !objstore.IsNotExist(err) {
			t.Fatalf("get version of a missing key: err = %v, want ErrNotExist", err)
		}
		if err := b.PutIfMatch(ctx, key, []byte("x"), "0123456789abcdef"); !objstore.IsChanged(err) {
			t.Fatalf("replace of a missing key: err = %v, want ErrChanged", err)
		}
		if _, err := b.Attributes(ctx, key); !objstore.IsNotExist(err) {
			t.Fatalf("a refused replace created the object: %v", err)
		}
		if err := b.PutIfAbsent(ctx, key, []byte("v1")); err != nil {
			t.Fatal(err)
		}
		data, v1, err := b.GetVersion(ctx, key)
		if err != nil || string(data) != "v1" || v1 == "" {
			t.Fatalf("get version = %q, %q, %v; want v1 and a version", data, v1, err)
		}
		if err := b.PutIfMatch(ctx, key, []byte("v2"), v1); err != nil {
			t.Fatalf("replace of the version read: %v", err)
		}
		data, v2, err := b.GetVersion(ctx, key)
		if err != nil || string(data) != "v2" || v2 == v1 {
			t.Fatalf("after replace: %q, version %q (before %q), %v", data, v2, v1, err)
		}
		if err := b.PutIfMatch(ctx, key, []byte("stale"), v1); !objstore.IsChanged(err) {
			t.Fatalf("replace of a stale version: err = %v, want ErrChanged", err)
		}
		requireContent(t, b, key, []byte("v2"))
		// A plain Put is a new version too.
		Put(t, b, key, []byte("v3"))
		if err := b.PutIfMatch(ctx, key, []byte("stale"), v2); !objstore.IsChanged(err) {
			t.Fatalf("replace after a Put: err = %v, want ErrChanged", err)
		}
		requireContent(t, b, key, []byte("v3"))
		if err := b.Delete(ctx, key); err != nil {
			t.Fatal(err)
		}
		if err := b.PutIfMatch(ctx, key, []byte("stale"), v2); !objstore.IsChanged(err) {
			t.Fatalf("replace of a deleted object: err = %v, want ErrChanged", err)
		}
	})

	t.Run("racing replaces: one winner per version", func(t *testing.T) {
		// Counters incremented by read-modify-write: every increment that
		// reports success must be in the final value, none twice.
		const writers, rounds = 4, 5
		key := "acc-cas-race/counter"
		if err := b.PutIfAbsent(ctx, key, []byte("0")); err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		won := 0
		var wg sync.WaitGroup
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range rounds {
					data, v, err := b.GetVersion(ctx, key)
					if err != nil {
						t.Errorf("writer %d: %v", w, err)
						return
					}
					n, err := strconv.Atoi(string(data))
					if err != nil {
						t.Errorf("writer %d: %q: %v", w, data, err)
						return
					}
					err = b.PutIfMatch(ctx, key, []byte(strconv.Itoa(n+1)), v)
					switch {
					case err == nil:
						mu.Lock()
						won++
						mu.Unlock()
					case !objstore.IsChanged(err):
						t.Errorf("writer %d: %v", w, err)
						return
					}
				}
			}()
		}
		wg.Wait()
		requireContent(t, b, key, []byte(fmt.Sprint(won)))
		if won == 0 {
			t.Error("no replace won")
		}
	})
}
