package inbox_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/ingest/inbox"
	"github.com/sluicehq/sluice/objstore"
)

// memBucket is an in-memory store with S3's semantics for what the ledger
// uses (sorted listing with StartAfter, conditional create and replace),
// recording every call: the ledger's cost is counted in calls, which a
// real store would answer the same way whatever its latency.
type memBucket struct {
	mu    sync.Mutex
	keys  []string // sorted
	data  map[string][]byte
	calls []string // "op key"
}

func newMemBucket() *memBucket { return &memBucket{data: map[string][]byte{}} }

func (m *memBucket) record(op, key string) {
	m.calls = append(m.calls, op+" "+key)
}

func etag(b []byte) string { s := md5.Sum(b); return hex.EncodeToString(s[:]) }

func (m *memBucket) Name() string { return "mem" }

func (m *memBucket) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	return m.GetRange(ctx, key, 0, -1)
}

func (m *memBucket) GetRange(_ context.Context, key string, off, n int64) (io.ReadCloser, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.record("get", key)
	d, ok := m.data[key]
	if !ok {
		return nil, fmt.Errorf("get %s: %w", key, objstore.ErrNotExist)
	}
	d = d[min(off, int64(len(d))):]
	if n >= 0 {
		d = d[:min(n, int64(len(d)))]
	}
	return io.NopCloser(bytes.NewReader(d)), nil
}

func (m *memBucket) Attributes(_ context.Context, key string) (objstore.ObjectAttrs, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.record("head", key)
	d, ok := m.data[key]
	if !ok {
		return objstore.ObjectAttrs{}, fmt.Errorf("head %s: %w", key, objstore.ErrNotExist)
	}
	return objstore.ObjectAttrs{Key: key, Size: int64(len(d)), ETag: etag(d)}, nil
}

func (m *memBucket) Iter(ctx context.Context, prefix string, fn func(objstore.ObjectAttrs) error) error {
	return m.IterAfter(ctx, prefix, "", fn)
}

// IterAfter counts one call per page of 1000 keys, as S3 answers.
func (m *memBucket) IterAfter(_ context.Context, prefix, after string, fn func(objstore.ObjectAttrs) error) error {
	m.mu.Lock()
	start := sort.SearchStrings(m.keys, max(prefix, after))
	for start < len(m.keys) && m.keys[start] <= after {
		start++
	}
	var page []objstore.ObjectAttrs
	i := start
	for ; i < len(m.keys) && strings.HasPrefix(m.keys[i], prefix) && len(page) < 1000; i++ {
		d := m.data[m.keys[i]]
		page = append(page, objstore.ObjectAttrs{Key: m.keys[i], Size: int64(len(d)), ETag: etag(d)})
	}
	m.record("list", prefix)
	m.mu.Unlock()
	for _, a := range page {
		if err := fn(a); err != nil {
			return err
		}
	}
	if len(page) == 1000 {
		return m.IterAfter(context.Background(), prefix, page[len(page)-1].Key, fn)
	}
	return nil
}

func (m *memBucket) put(key string, data []byte) {
	if _, ok := m.data[key]; !ok {
		i := sort.SearchStrings(m.keys, key)
		m.keys = slices.Insert(m.keys, i, key)
	}
	m.data[key] = data
}

func (m *memBucket) Put(_ context.Context, key string, r io.Reader, _ int64) error {
	d, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.record("put", key)
	m.put(key, d)
	return nil
}

func (m *memBucket) PutIfAbsent(_ context.Context, key string, d []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.record("put-if-absent", key)
	if _, ok := m.data[key]; ok {
		return objstore.ErrExists
	}
	m.put(key, slices.Clone(d))
	return nil
}

func (m *memBucket) GetVersion(_ context.Context, key string) ([]byte, string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.record("get", key)
	d, ok := m.data[key]
	if !ok {
		return nil, "", objstore.ErrNotExist
	}
	return slices.Clone(d), etag(d), nil
}

func (m *memBucket) PutIfMatch(_ context.Context, key string, d []byte, version string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.record("put-if-match", key)
	if old, ok := m.data[key]; !ok || etag(old) != version {
		return objstore.ErrChanged
	}
	m.put(key, slices.Clone(d))
	return nil
}

func (m *memBucket) Delete(_ context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.record("delete", key)
	if _, ok := m.data[key]; ok {
		delete(m.data, key)
		i := sort.SearchStrings(m.keys, key)
		m.keys = slices.Delete(m.keys, i, i+1)
	}
	return nil
}

// fillLedger makes n committed files: inbox objects and their ledger
// entries as a finished pass leaves them, with the cursor after the last.
func fillLedger(m *memBucket, n int) {
	body := []byte(`{"ts":"2026-11-20T10:00:00Z","id":"x","user":"u","amount":1}` + "\n")
	ver := etag(body)
	var last string
	// Keys and entries appended in order, then sorted once: filling a
	// million sorted inserts one by one would dominate the test.
	for i := range n {
		key := fmt.Sprintf("in/ev/%08d.jsonl", i)
		m.keys = append(m.keys, key)
		m.data[key] = body
		ek := fmt.Sprintf("_sluice/inbox/ev/files/%s.%s.json", hex.EncodeToString([]byte(key)), ver)
		m.keys = append(m.keys, ek)
		m.data[ek] = []byte(fmt.Sprintf(`{"key":%q,"version":%q,"size":%d,"format":"jsonl","state":"committed","epoch":1,"records":1}`, key, ver, len(body)))
		last = key
	}
	slices.Sort(m.keys)
	m.data["_sluice/inbox/ev/cursor.json"] = []byte(fmt.Sprintf(`{"after":%q}`, last))
	m.keys = append(m.keys, "_sluice/inbox/ev/cursor.json")
	slices.Sort(m.keys)
}

// findAndClaimCalls drops one new file into a ledger of n entries, runs a
// pass, and counts the store calls made before the file's mapping starts
// (its first read): finding it and claiming it.
func findAndClaimCalls(t testing.TB, n int) (calls []string, heapMB float64) {
	m := newMemBucket()
	fillLedger(m, n)
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	newKey := fmt.Sprintf("in/ev/%08d.jsonl", n)
	m.put(newKey, []byte(`{"ts":"2026-11-20T10:00:00Z","id":"new","user":"u","amount":1}`+"\n"))
	m.calls = nil
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st := runPass(t, ctx, m, m, tableList(testTables(t), "ev"), inbox.Config{Lease: 10 * time.Second, ReconcileEvery: -1})
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if st.Committed != 1 {
		t.Fatalf("pass: %+v, want the new file committed", st)
	}
	for _, c := range m.calls {
		if c == "get "+newKey {
			break
		}
		if !strings.Contains(c, "_sluice/commits/") && !strings.HasSuffix(c, "_sluice/tables/") {
			calls = append(calls, c)
		}
	}
	return calls, float64(after.HeapAlloc-min(after.HeapAlloc, before.HeapAlloc)) / (1 << 20)
}

// Finding a new file and claiming it costs the same few calls whether the
// ledger holds a hundred entries or many thousands.
func TestLedgerFindAndClaimCalls(t *testing.T) {
	sizes := []int{100, 20_000}
	if os.Getenv("SLUICE_BENCH_LEDGER") == "1" {
		sizes = append(sizes, 1_000_000)
	}
	var first int
	for i, n := range sizes {
		calls, heap := findAndClaimCalls(t, n)
		t.Logf("%d entries: %d calls to find and claim a new file, heap growth %.1f MB: %v", n, len(calls), heap, calls)
		if len(calls) >= 10 {
			t.Errorf("%d entries: %d calls, want fewer than 10", n, len(calls))
		}
		if i == 0 {
			first = len(calls)
		} else if len(calls) != first {
			t.Errorf("%d entries: %d calls, %d with %d entries: the cost grows with the ledger", n, len(calls), first, sizes[0])
		}
	}
}
