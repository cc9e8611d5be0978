package objstore_test

import (
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/objstore/objstoretest"
)

// The sweeper finds a store's Uploads through the decorators.
func TestAsUploadsThroughDecorators(t *testing.T) {
	l := objstoretest.NewLocal(t)
	reg := prometheus.NewRegistry()
	sm := objstore.NewMetrics(reg)
	decorated := objstore.NewRetrying(objstore.NewInstrumented(l, sm, "raw"), objstore.DefaultRetryPolicy(), slog.New(slog.DiscardHandler), sm)
	if u, ok := objstore.AsUploads(decorated); !ok || u != objstore.Uploads(l) {
		t.Fatalf("AsUploads(decorated local) = %v, %v; want the local bucket", u, ok)
	}
	if _, ok := objstore.AsUploads(objstoretest.NewHookBucket(l)); ok {
		t.Error("a wrapper without Unwrap hides the store's uploads, but AsUploads found them")
	}
}

// A local bucket's temporary files are its incomplete uploads: listed by
// the directory they are in, removed by AbortUpload, and never objects.
func TestLocalIncompleteUploads(t *testing.T) {
	ctx := t.Context()
	l := objstoretest.NewLocal(t)
	objstoretest.Put(t, l, "t/dt=2024-05-01/hour=13/done.parquet", []byte("whole"))
	for _, p := range []string{"t/dt=2024-05-01/hour=13/.sluice-tmp-1", "t/.sluice-tmp-2", ".sluice-tmp-3", "u/.sluice-tmp-4"} {
		path := filepath.Join(l.Dir(), filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte("half"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	list := func(prefix string) []string {
		var out []string
		if err := l.IncompleteUploads(ctx, prefix, func(u objstore.IncompleteUpload) error {
			out = append(out, u.Key)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		slices.Sort(out)
		return out
	}
	if got, want := list("t/"), []string{"t/.sluice-tmp-2", "t/dt=2024-05-01/hour=13/.sluice-tmp-1"}; !slices.Equal(got, want) {
		t.Fatalf("uploads under t/ = %q, want %q", got, want)
	}
	if got := list("missing/"); len(got) != 0 {
		t.Fatalf("uploads under a missing prefix = %q", got)
	}
	if err := l.AbortUpload(ctx, objstore.IncompleteUpload{Key: "t/.sluice-tmp-2"}); err != nil {
		t.Fatal(err)
	}
	if err := l.AbortUpload(ctx, objstore.IncompleteUpload{Key: "t/.sluice-tmp-2"}); err != nil {
		t.Fatalf("aborting twice: %v", err)
	}
	if err := l.AbortUpload(ctx, objstore.IncompleteUpload{Key: "t/dt=2024-05-01/hour=13/done.parquet"}); err == nil {
		t.Fatal("AbortUpload removed an object")
	}
	if got, want := list("t/"), []string{"t/dt=2024-05-01/hour=13/.sluice-tmp-1"}; !slices.Equal(got, want) {
		t.Fatalf("after the abort: %q, want %q", got, want)
	}
	if _, err := l.Attributes(ctx, "t/dt=2024-05-01/hour=13/done.parquet"); err != nil {
		t.Fatal(err)
	}
}
