package objstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
)

// IncompleteUpload is an upload that was begun and never completed or
// aborted: an S3 multipart upload whose writer died, or a local bucket's
// temporary file left by a killed process. It is invisible to readers and
// takes space until it is aborted.
type IncompleteUpload struct {
	Key       string    // the key the upload was for (local: the temporary file's path under the root)
	UploadID  string    // S3's upload ID; "" for a local temporary file
	Initiated time.Time // when it was begun (local: last written)
	Size      int64     // bytes uploaded so far, where the store says (0 if unknown)
}

// Uploads is implemented by stores that can leave incomplete uploads
// behind. The sweeper finds it with AsUploads.
type Uploads interface {
	// IncompleteUploads calls fn for each incomplete upload whose key starts
	// with prefix. An error from fn stops the walk and is returned.
	IncompleteUploads(ctx context.Context, prefix string, fn func(IncompleteUpload) error) error
	// AbortUpload discards u; aborting one that is gone is not an error.
	AbortUpload(ctx context.Context, u IncompleteUpload) error
}

// AsUploads returns the Uploads of b or of the bucket a decorator (Retrying,
// Instrumented) wraps, and false if the store has none.
func AsUploads(b Bucket) (Uploads, bool) {
	for b != nil {
		if u, ok := b.(Uploads); ok {
			return u, true
		}
		w, ok := b.(interface{ Unwrap() Bucket })
		if !ok {
			return nil, false
		}
		b = w.Unwrap()
	}
	return nil, false
}

var (
	_ Uploads = (*S3)(nil)
	_ Uploads = (*Local)(nil)
)

// IncompleteUploads lists the multipart uploads begun under prefix and
// neither completed nor aborted.
func (s *S3) IncompleteUploads(ctx context.Context, prefix string, fn func(IncompleteUpload) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for u := range s.client.ListIncompleteUploads(ctx, s.cfg.Bucket, s.prefix+prefix, true) {
		if u.Err != nil {
			return fmt.Errorf("list incomplete uploads %q in %s: %w", prefix, s.Name(), u.Err)
		}
		key, ok := strings.CutPrefix(u.Key, s.prefix)
		if !ok {
			continue
		}
		if err := fn(IncompleteUpload{Key: key, UploadID: u.UploadID, Initiated: u.Initiated, Size: u.Size}); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// AbortUpload aborts one multipart upload by its ID.
func (s *S3) AbortUpload(ctx context.Context, u IncompleteUpload) error {
	fk, err := s.fullKey(u.Key)
	if err != nil {
		return fmt.Errorf("abort upload %s: %w", u.Key, err)
	}
	if err := s.core.AbortMultipartUpload(ctx, s.cfg.Bucket, fk, u.UploadID); err != nil {
		if minio.ToErrorResponse(err).Code == "NoSuchUpload" {
			return nil
		}
		return fmt.Errorf("abort upload %s (%s): %w", u.Key, u.UploadID, err)
	}
	return nil
}

// IncompleteUploads lists the temporary files (of Put and PutIfAbsent) in
// the directories under prefix: a process killed while writing leaves them.
// A temporary file's "key" is its path relative to the root; it is listed
// when its directory starts with prefix (so "t/" lists every temporary file
// under t/, and "t" none in the root).
func (l *Local) IncompleteUploads(ctx context.Context, prefix string, fn func(IncompleteUpload) error) error {
	dirKey := prefix[:strings.LastIndex(prefix, "/")+1]
	start := filepath.Join(l.root, filepath.FromSlash(dirKey))
	err := filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed while we walked, or never there
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() || !strings.HasPrefix(d.Name(), tmpPrefix) {
			return nil
		}
		rel, err := filepath.Rel(l.root, p)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		dir := key[:strings.LastIndex(key, "/")+1]
		if !strings.HasPrefix(dir, prefix) {
			return nil // for a key that may or may not start with prefix
		}
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // renamed into place or removed since the listing
		}
		if err != nil {
			return err
		}
		return fn(IncompleteUpload{Key: key, Initiated: info.ModTime(), Size: info.Size()})
	})
	if err != nil {
		return fmt.Errorf("list temporary files %q: %w", prefix, err)
	}
	return nil
}

// AbortUpload removes a temporary file.
func (l *Local) AbortUpload(ctx context.Context, u IncompleteUpload) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	name := u.Key[strings.LastIndex(u.Key, "/")+1:]
	if !strings.HasPrefix(name, tmpPrefix) || strings.Contains(u.Key, "..") {
		return fmt.Errorf("abort upload %s: not a temporary file", u.Key)
	}
	if err := os.Remove(filepath.Join(l.root, filepath.FromSlash(u.Key))); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("abort upload %s: %w", u.Key, err)
	}
	return nil
}
