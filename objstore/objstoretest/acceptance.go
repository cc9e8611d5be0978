package objstoretest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"
	"testing/iotest"

	"github.com/sluicehq/sluice/objstore"
)

// AcceptanceOptions tunes the suite to a backend.
type AcceptanceOptions struct {
	// LargeObjectSize is the size of the large-object case, in bytes; make it
	// more than the backend's multipart part size (default 12 MiB).
	LargeObjectSize int
}

// AcceptanceTest checks the Bucket contract on b. Every case works under its
// own prefix, so b may hold other data, but no other writer may use the
// "acc-" prefix during the run.
func AcceptanceTest(t *testing.T, b objstore.Bucket, opts AcceptanceOptions) {
	if opts.LargeObjectSize == 0 {
		opts.LargeObjectSize = 12 << 20
	}
	ctx := t.Context()

	t.Run("put, get, overwrite, attributes", func(t *testing.T) {
		key := "acc-put/obj.bin"
		Put(t, b, key, []byte("first version"))
		requireContent(t, b, key, []byte("first version"))
		Put(t, b, key, []byte("second, longer version"))
		requireContent(t, b, key, []byte("second, longer version"))
		a, err := b.Attributes(ctx, key)
		if err != nil {
			t.Fatalf("attributes: %v", err)
		}
		if a.Key != key || a.Size != int64(len("second, longer version")) || a.LastModified.IsZero() {
			t.Errorf("attributes = %+v, want key %s, size %d, a modification time", a, key, len("second, longer version"))
		}
	})

	t.Run("get range", func(t *testing.T) {
		key := "acc-range/obj.bin"
		data := make([]byte, 100)
		for i := range data {
			data[i] = byte(i)
		}
		Put(t, b, key, data)
		for _, tc := range []struct {
			name           string
			offset, length int64
			want           []byte
			wantErr        bool
		}{
			{name: "head", offset: 0, length: 10, want: data[:10]},
			{name: "middle", offset: 40, length: 20, want: data[40:60]},
			{name: "to the end", offset: 90, length: -1, want: data[90:]},
			{name: "whole", offset: 0, length: -1, want: data},
			{name: "length past the end is cut", offset: 95, length: 10, want: data[95:]},
			{name: "zero length", offset: 50, length: 0, want: []byte{}},
			{name: "offset at the end", offset: 100, length: -1, want: []byte{}},
			{name: "offset past the end", offset: 101, length: 5, wantErr: true},
			{name: "negative offset", offset: -1, length: 5, wantErr: true},
		} {
			t.Run(tc.name, func(t *testing.T) {
				rc, err := b.GetRange(ctx, key, tc.offset, tc.length)
				if tc.wantErr {
					if err == nil {
						rc.Close()
						t.Fatal("want an error")
					}
					if objstore.IsNotExist(err) {
						t.Fatalf("error %v must not claim the object is missing", err)
					}
					return
				}
				if err != nil {
					t.Fatalf("get range: %v", err)
				}
				got, err := io.ReadAll(rc)
				rc.Close()
				if err != nil {
					t.Fatalf("read: %v", err)
				}
				if !bytes.Equal(got, tc.want) {
					t.Errorf("got %v, want %v", got, tc.want)
				}
			})
		}
		if _, err := b.GetRange(ctx, "acc-range/missing", 0, 10); !objstore.IsNotExist(err) {
			t.Errorf("range of a missing key: err = %v, want ErrNotExist", err)
		}
	})

	t.Run("missing keys", func(t *testing.T) {
		Put(t, b, "acc-missing/file", []byte("x"))
		for _, key := range []string{"acc-missing/nothing", "acc-missing/file/under-a-file", "acc-missing"} {
			if rc, err := b.Get(ctx, key); !objstore.IsNotExist(err) {
				if err == nil {
					rc.Close()
				}
				t.Errorf("get %s: err = %v, want ErrNotExist", key, err)
			}
			if _, err := b.Attributes(ctx, key); !objstore.IsNotExist(err) {
				t.Errorf("attributes %s: err = %v, want ErrNotExist", key, err)
			}
		}
	})

	t.Run("iter order and prefix semantics", func(t *testing.T) {
		// Names around "/" (0x2f): '-' and '.' sort before it, '0' after,
		// which is where a directory walk and key order part ways.
		keys := []string{
			"acc-iter/a/b/c", "acc-iter/a/b-1", "acc-iter/a/b.x", "acc-iter/a/b0",
			"acc-iter/a/ba/z", "acc-iter/a/bc", "acc-iter/a!x", "acc-iter/b", "acc-iter/a/b/d/e",
		}
		for i, k := range keys {
			Put(t, b, k, bytes.Repeat([]byte("z"), i))
		}
		sorted := slices.Sorted(slices.Values(keys))
		for _, tc := range []struct {
			name, prefix string
			want         []string
		}{
			{name: "everything", prefix: "acc-iter/", want: sorted},
			{name: "string prefix, not a directory", prefix: "acc-iter/a/b",
				want: []string{"acc-iter/a/b-1", "acc-iter/a/b.x", "acc-iter/a/b/c", "acc-iter/a/b/d/e", "acc-iter/a/b0", "acc-iter/a/ba/z", "acc-iter/a/bc"}},
			{name: "directory prefix", prefix: "acc-iter/a/b/", want: []string{"acc-iter/a/b/c", "acc-iter/a/b/d/e"}},
			{name: "prefix is a whole key", prefix: "acc-iter/a/bc", want: []string{"acc-iter/a/bc"}},
			{name: "partial segment", prefix: "acc-iter/a/b.", want: []string{"acc-iter/a/b.x"}},
			{name: "nothing matches", prefix: "acc-iter/zz", want: nil},
			{name: "missing directory", prefix: "acc-iter/q/r/", want: nil},
		} {
			t.Run(tc.name, func(t *testing.T) {
				var got []string
				err := b.Iter(ctx, tc.prefix, func(a objstore.ObjectAttrs) error {
					got = append(got, a.Key)
					if want := int64(slices.Index(keys, a.Key)); a.Size != want {
						t.Errorf("%s: size %d, want %d", a.Key, a.Size, want)
					}
					return nil
				})
				if err != nil {
					t.Fatalf("iter: %v", err)
				}
				if !slices.Equal(got, tc.want) {
					t.Errorf("iter %q =\n %q\nwant\n %q", tc.prefix, got, tc.want)
				}
			})
		}
		// Listing after a key: every cut of the sorted keys, including
		// ones between a directory and its neighbours and keys not stored.
		t.Run("after a key", func(t *testing.T) {
			afters := append(slices.Clone(sorted), "", "acc-iter/a/b", "acc-iter/a/b/", "acc-iter/a/b/c0", "acc-iter/a/b/d", "acc-iter/a/c", "acc-iter/zzz")
			for _, after := range afters {
				var want []string
				for _, k := range sorted {
					if k > after {
						want = append(want, k)
					}
				}
				var got []string
				if err := objstore.IterAfter(ctx, b, "acc-iter/", after, func(a objstore.ObjectAttrs) error {
					got = append(got, a.Key)
					return nil
				}); err != nil {
					t.Fatalf("iter after %q: %v", after, err)
				}
				if !slices.Equal(got, want) {
					t.Errorf("iter after %q =\n %q\nwant\n %q", after, got, want)
				}
			}
		})
		t.Run("callback error stops the walk", func(t *testing.T) {
			stop := errors.New("enough")
			calls := 0
			err := b.Iter(ctx, "acc-iter/", func(objstore.ObjectAttrs) error {
				calls++
				if calls == 3 {
					return stop
				}
				return nil
			})
			if !errors.Is(err, stop) || calls != 3 {
				t.Errorf("err = %v after %d calls, want %v after 3", err, calls, stop)
			}
		})
	})

	t.Run("keys with spaces and unicode", func(t *testing.T) {
		keys := []string{
			"acc-names/with space/file name.txt",
			"acc-names/ünïcödé/日本語 ファイル.json",
			"acc-names/symbols/a+b=c&d;e,f@g~h!$'(x).bin",
			"acc-names/symbols/percent%20and#hash?q",
			"acc-names/kafka:events/3/x",
		}
		for _, k := range keys {
			Put(t, b, k, []byte(k))
			requireContent(t, b, k, []byte(k))
		}
		got := ListKeys(t, b, "acc-names/")
		if want := slices.Sorted(slices.Values(keys)); !slices.Equal(got, want) {
			t.Errorf("iter = %q, want %q", got, want)
		}
	})

	t.Run("empty objects", func(t *testing.T) {
		Put(t, b, "acc-empty/put", nil)
		requireContent(t, b, "acc-empty/put", []byte{})
		if err := b.PutIfAbsent(ctx, "acc-empty/pia", []byte{}); err != nil {
			t.Fatalf("put-if-absent empty: %v", err)
		}
		requireContent(t, b, "acc-empty/pia", []byte{})
		for _, k := range []string{"acc-empty/put", "acc-empty/pia"} {
			a, err := b.Attributes(ctx, k)
			if err != nil || a.Size != 0 {
				t.Errorf("attributes %s = %+v, %v; want size 0", k, a, err)
			}
		}
		if err := b.PutIfAbsent(ctx, "acc-empty/pia", []byte{}); !objstore.IsExists(err) {
			t.Errorf("second empty put-if-absent: err = %v, want ErrExists", err)
		}
	})

	t.Run("put-if-absent", func(t *testing.T) {
		key := "acc-pia/once"
		if err := b.PutIfAbsent(ctx, key, []byte("winner")); err != nil {
			t.Fatalf("first: %v", err)
		}
		if err := b.PutIfAbsent(ctx, key, []byte("loser")); !objstore.IsExists(err) {
			t.Fatalf("second: err = %v, want ErrExists", err)
		}
		requireContent(t, b, key, []byte("winner"))
		Put(t, b, "acc-pia/over-put", []byte("plain"))
		if err := b.PutIfAbsent(ctx, "acc-pia/over-put", []byte("x")); !objstore.IsExists(err) {
			t.Fatalf("over a Put object: err = %v, want ErrExists", err)
		}
	})

	t.Run("put-if-absent race has one winner", func(t *testing.T) {
		const writers, rounds = 12, 5
		for round := range rounds {
			key := fmt.Sprintf("acc-race/round-%d", round)
			var wg sync.WaitGroup
			errs := make([]error, writers)
			start := make(chan struct{})
			for w := range writers {
				wg.Go(func() {
					<-start
					errs[w] = b.PutIfAbsent(ctx, key, []byte(fmt.Sprintf("writer %d", w)))
				})
			}
			close(start)
			wg.Wait()
			winner := -1
			for w, err := range errs {
				switch {
				case err == nil && winner >= 0:
					t.Fatalf("round %d: writers %d and %d both won", round, winner, w)
				case err == nil:
					winner = w
				case !objstore.IsExists(err):
					t.Fatalf("round %d: writer %d: %v, want ErrExists", round, w, err)
				}
			}
			if winner < 0 {
				t.Fatalf("round %d: nobody won", round)
			}
			requireContent(t, b, key, []byte(fmt.Sprintf("writer %d", winner)))
		}
	})

	t.Run("concurrent puts are atomic", func(t *testing.T) {
		const writers = 8
		key := "acc-atomic/obj"
		contents := make([][]byte, writers)
		for i := range contents {
			contents[i] = bytes.Repeat([]byte{byte('a' + i)}, 256<<10)
		}
		var wg sync.WaitGroup
		for i := range writers {
			wg.Go(func() {
				if err := b.Put(ctx, key, bytes.NewReader(contents[i]), int64(len(contents[i]))); err != nil {
					t.Errorf("put %d: %v", i, err)
				}
			})
		}
		wg.Wait()
		got := readAll(t, b, key)
		if !slices.ContainsFunc(contents, func(c []byte) bool { return bytes.Equal(c, got) }) {
			t.Errorf("object is a mix of writers (%d bytes, starts with %q)", len(got), got[:min(8, len(got))])
		}
	})

	t.Run("failed put leaves the old object", func(t *testing.T) {
		key := "acc-failed/obj"
		Put(t, b, key, []byte("old"))
		short := bytes.NewReader([]byte("too short"))
		if err := b.Put(ctx, key, short, 1000); err == nil {
			t.Fatal("put with fewer bytes than its size: want an error")
		}
		broken := io.MultiReader(bytes.NewReader([]byte("partial")), iotest.ErrReader(errors.New("disk on fire")))
		if err := b.Put(ctx, key, broken, -1); err == nil {
			t.Fatal("put from a failing reader: want an error")
		}
		requireContent(t, b, key, []byte("old"))
		if got := ListKeys(t, b, "acc-failed/"); !slices.Equal(got, []string{key}) {
			t.Errorf("iter = %q, want only %s (no temporaries)", got, key)
		}
	})

	t.Run("put stores exactly size bytes", func(t *testing.T) {
		key := "acc-size/obj"
		if err := b.Put(ctx, key, bytes.NewReader([]byte("0123456789")), 4); err != nil {
			t.Fatalf("put: %v", err)
		}
		requireContent(t, b, key, []byte("0123"))
	})

	t.Run("delete", func(t *testing.T) {
		Put(t, b, "acc-del/a/b/c", []byte("c"))
		Put(t, b, "acc-del/a/x", []byte("x"))
		if err := b.Delete(ctx, "acc-del/a/b/c"); err != nil {
			t.Fatalf("delete: %v", err)
		}
		if _, err := b.Attributes(ctx, "acc-del/a/b/c"); !objstore.IsNotExist(err) {
			t.Errorf("after delete: err = %v, want ErrNotExist", err)
		}
		for _, k := range []string{"acc-del/a/b/c", "acc-del/never", "acc-del/a"} {
			if err := b.Delete(ctx, k); err != nil {
				t.Errorf("delete %s (missing or a prefix): %v", k, err)
			}
		}
		if got := ListKeys(t, b, "acc-del/"); !slices.Equal(got, []string{"acc-del/a/x"}) {
			t.Errorf("iter = %q, want [acc-del/a/x]", got)
		}
		// The key can be written again where a deleted one pruned its parents.
		Put(t, b, "acc-del/a/b/c", []byte("again"))
		requireContent(t, b, "acc-del/a/b/c", []byte("again"))
	})

	t.Run("invalid keys are refused", func(t *testing.T) {
		for _, key := range []string{"", "/abs", "a//b", "../escape", "a/../../b", "a/./b", "trailing/", "tmp/.sluice-tmp-x"} {
			t.Run(fmt.Sprintf("%q", key), func(t *testing.T) {
				if err := b.Put(ctx, key, bytes.NewReader(nil), 0); !errors.Is(err, objstore.ErrInvalidKey) {
					t.Errorf("put: err = %v, want ErrInvalidKey", err)
				}
				if err := b.PutIfAbsent(ctx, key, nil); !errors.Is(err, objstore.ErrInvalidKey) {
					t.Errorf("put-if-absent: err = %v, want ErrInvalidKey", err)
				}
				if _, err := b.Get(ctx, key); !errors.Is(err, objstore.ErrInvalidKey) {
					t.Errorf("get: err = %v, want ErrInvalidKey", err)
				}
				if err := b.Delete(ctx, key); !errors.Is(err, objstore.ErrInvalidKey) {
					t.Errorf("delete: err = %v, want ErrInvalidKey", err)
				}
			})
		}
	})

	t.Run("large object", func(t *testing.T) {
		data := randomBytes(t, opts.LargeObjectSize)
		want := sha256.Sum256(data)
		for _, tc := range []struct {
			name string
			r    io.Reader
			size int64
		}{
			{name: "known size", r: bytes.NewReader(data), size: int64(len(data))},
			{name: "unknown size, not seekable", r: iotest.HalfReader(bytes.NewReader(data)), size: -1},
		} {
			t.Run(tc.name, func(t *testing.T) {
				key := "acc-large/" + tc.name
				if err := b.Put(ctx, key, tc.r, tc.size); err != nil {
					t.Fatalf("put: %v", err)
				}
				a, err := b.Attributes(ctx, key)
				if err != nil || a.Size != int64(len(data)) {
					t.Fatalf("attributes = %+v, %v; want size %d", a, err, len(data))
				}
				if got := sha256.Sum256(readAll(t, b, key)); got != want {
					t.Error("content differs")
				}
				rc, err := b.GetRange(ctx, key, int64(len(data))-10, -1)
				if err != nil {
					t.Fatalf("range: %v", err)
				}
				tail, _ := io.ReadAll(rc)
				rc.Close()
				if !bytes.Equal(tail, data[len(data)-10:]) {
					t.Error("tail range differs")
				}
			})
		}
	})

	t.Run("cancelled context", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if err := b.Put(cctx, "acc-cancel/x", bytes.NewReader([]byte("x")), 1); err == nil {
			t.Error("put with a cancelled context: want an error")
		}
		if _, err := b.Attributes(ctx, "acc-cancel/x"); !objstore.IsNotExist(err) {
			t.Errorf("object written despite cancellation: %v", err)
		}
	})
}

func readAll(t testing.TB, b objstore.BucketReader, key string) []byte {
	t.Helper()
	rc, err := b.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return data
}

func requireContent(t testing.TB, b objstore.BucketReader, key string, want []byte) {
	t.Helper()
	if got := readAll(t, b, key); !bytes.Equal(got, want) {
		t.Fatalf("%s holds %q, want %q", key, got, want)
	}
}

// ListKeys lists the keys under prefix or fails the test.
func ListKeys(t testing.TB, b objstore.BucketReader, prefix string) []string {
	t.Helper()
	var keys []string
	if err := b.Iter(t.Context(), prefix, func(a objstore.ObjectAttrs) error {
		keys = append(keys, a.Key)
		return nil
	}); err != nil {
		t.Fatalf("iter %s: %v", prefix, err)
	}
	return keys
}
