package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/sluicehq/sluice/objstore"
)

// uploadDir copies every file under root into b, keyed by its path below
// root: a local lake made by a test, moved to a store.
func uploadDir(t *testing.T, ctx context.Context, b objstore.Bucket, root string) {
	t.Helper()
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return b.Put(ctx, filepath.ToSlash(rel), bytes.NewReader(data), int64(len(data)))
	})
	if err != nil {
		t.Fatal(err)
	}
}
