package objstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// Local is a Bucket kept in a directory: the key "a/b/c" is the file
// dir/a/b/c. It is the embedded default store and the reference the S3 store
// is tested against.
//
// Writes survive kill -9 and power loss once they return: data is fsynced
// before it gets its final name, and the directory after. Conditional creates
// are atomic across processes sharing the directory (link(2) fails if the
// name exists). A key cannot name an object and be a "directory" of other
// keys at once ("a" and "a/b"), as with any filesystem-backed store; Sluice's
// layout never needs that.
type Local struct {
	root string
}

var _ Bucket = (*Local)(nil)

// NewLocal opens (and creates if needed) a bucket in dir.
func NewLocal(dir string) (*Local, error) {
	if dir == "" {
		return nil, errors.New("local bucket: empty directory")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("local bucket %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("local bucket %s: %w", dir, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("local bucket %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("local bucket %s: not a directory", dir)
	}
	return &Local{root: abs}, nil
}

// Name returns the bucket's directory as a file URL.
func (l *Local) Name() string { return "file://" + l.root }

// Dir returns the bucket's root directory.
func (l *Local) Dir() string { return l.root }

func (l *Local) path(key string) (string, error) {
	if err := ValidateKey(key); err != nil {
		return "", err
	}
	return filepath.Join(l.root, filepath.FromSlash(key)), nil
}

// Get opens the object.
func (l *Local) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	return l.GetRange(ctx, key, 0, -1)
}

// GetRange opens length bytes from offset (length < 0: to the end). An offset
// past the end of the object is an error.
func (l *Local) GetRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p, err := l.path(key)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	if offset < 0 {
		return nil, fmt.Errorf("get %s: negative offset %d", key, offset)
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, mapNotExist(err))
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("get %s: %w", key, ErrNotExist)
	}
	if offset > fi.Size() {
		f.Close()
		return nil, fmt.Errorf("get %s: range starts at %d, past the end (%d bytes)", key, offset, fi.Size())
	}
	if offset == 0 && length < 0 {
		return f, nil
	}
	if length < 0 {
		length = fi.Size() - offset
	}
	return &sectionReadCloser{Reader: io.NewSectionReader(f, offset, length), f: f}, nil
}

type sectionReadCloser struct {
	io.Reader
	f *os.File
}

func (s *sectionReadCloser) Close() error { return s.f.Close() }

// Attributes returns the object's size and modification time.
func (l *Local) Attributes(ctx context.Context, key string) (ObjectAttrs, error) {
	if err := ctx.Err(); err != nil {
		return ObjectAttrs{}, err
	}
	p, err := l.path(key)
	if err != nil {
		return ObjectAttrs{}, fmt.Errorf("attributes %s: %w", key, err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		return ObjectAttrs{}, fmt.Errorf("attributes %s: %w", key, mapNotExist(err))
	}
	if !fi.Mode().IsRegular() {
		return ObjectAttrs{}, fmt.Errorf("attributes %s: %w", key, ErrNotExist)
	}
	return ObjectAttrs{Key: key, Size: fi.Size(), LastModified: fi.ModTime()}, nil
}

// mapNotExist turns "no such file" and "a parent is a file" into ErrNotExist.
func mapNotExist(err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return fmt.Errorf("%w (%v)", ErrNotExist, err)
	}
	return err
}

// Iter walks the objects whose keys start with prefix in ascending key order.
// Each directory is read and sorted on its own, comparing a subdirectory as
// its name plus "/", which is the lexical position of every key under it;
// this keeps memory to one directory listing per level.
func (l *Local) Iter(ctx context.Context, prefix string, fn func(ObjectAttrs) error) error {
	return l.IterAfter(ctx, prefix, "", fn)
}

// IterAfter is Iter for the keys after startAfter only; directories whose
// keys all sort before it are not read.
func (l *Local) IterAfter(ctx context.Context, prefix, startAfter string, fn func(ObjectAttrs) error) error {
	dirKey := prefix[:strings.LastIndex(prefix, "/")+1] // "" or "a/b/"
	if dirKey != "" && ValidateKey(strings.TrimSuffix(dirKey, "/")) != nil {
		return nil // no valid key lives under an invalid directory
	}
	err := l.walkDir(ctx, dirKey, prefix, startAfter, fn)
	if s, ok := err.(stopError); ok {
		return s.err // the caller's own error, unchanged
	}
	if err != nil {
		return fmt.Errorf("iter %q: %w", prefix, err)
	}
	return nil
}

// stopError carries an error returned by the caller's fn out of the walk.
type stopError struct{ err error }

func (s stopError) Error() string { return s.err.Error() }

func (l *Local) walkDir(ctx context.Context, dirKey, prefix, startAfter string, fn func(ObjectAttrs) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	entries, err := os.ReadDir(filepath.Join(l.root, filepath.FromSlash(dirKey)))
	if err != nil {
		if dirKey != "" && (errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)) {
			return nil // removed while we walked, or never there
		}
		return err
	}
	type item struct {
		key   string // full key, with a trailing "/" for directories
		entry fs.DirEntry
	}
	items := make([]item, 0, len(entries))
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, tmpPrefix) {
			continue
		}
		k := dirKey + name
		if e.IsDir() {
			k += "/"
			// Descend only where keys can still start with prefix, and
			// can sort after startAfter.
			if !strings.HasPrefix(k, prefix) && !strings.HasPrefix(prefix, k) {
				continue
			}
			if k < startAfter && !strings.HasPrefix(startAfter, k) {
				continue
			}
		} else if !e.Type().IsRegular() || !strings.HasPrefix(k, prefix) || k <= startAfter {
			continue
		}
		items = append(items, item{key: k, entry: e})
	}
	slices.SortFunc(items, func(a, b item) int { return strings.Compare(a.key, b.key) })
	for _, it := range items {
		if it.entry.IsDir() {
			if err := l.walkDir(ctx, it.key, prefix, startAfter, fn); err != nil {
				return err
			}
			continue
		}
		info, err := it.entry.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted since the listing
		}
		if err != nil {
			return err
		}
		if err := fn(ObjectAttrs{Key: it.key, Size: info.Size(), LastModified: info.ModTime()}); err != nil {
			return stopError{err}
		}
	}
	return nil
}

// Put writes r to a temporary file next to the target, fsyncs it and renames
// it over the key, so readers see the old or the new object, never a part.
func (l *Local) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	p, err := l.path(key)
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	tmp, err := l.writeTemp(ctx, p, r, size)
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("put %s: %w", key, err)
	}
	if err := syncDir(filepath.Dir(p)); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	return nil
}

// PutIfAbsent hard-links a fsynced temporary file to the key: link(2) fails
// when the name exists, atomically, also between processes.
func (l *Local) PutIfAbsent(ctx context.Context, key string, data []byte) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("put-if-absent %s: %w", key, err)
	}
	p, err := l.path(key)
	if err != nil {
		return fmt.Errorf("put-if-absent %s: %w", key, err)
	}
	tmp, err := l.writeTemp(ctx, p, bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return fmt.Errorf("put-if-absent %s: %w", key, err)
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, p); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("put-if-absent %s: %w", key, ErrExists)
		}
		return fmt.Errorf("put-if-absent %s: %w", key, err)
	}
	// Drop the temporary name before the directory sync so the synced
	// directory holds only the final one.
	os.Remove(tmp)
	if err := syncDir(filepath.Dir(p)); err != nil {
		return fmt.Errorf("put-if-absent %s: %w", key, err)
	}
	return nil
}

// writeTemp copies r into a fsynced temporary file in target's directory and
// returns its path. A concurrent Delete may prune the directory between
// creating it and creating the file in it; that is retried a few times.
func (l *Local) writeTemp(ctx context.Context, target string, r io.Reader, size int64) (string, error) {
	dir := filepath.Dir(target)
	var f *os.File
	var err error
	for range 5 {
		if err = l.mkdirAllSync(dir); err != nil {
			return "", err
		}
		f, err = os.CreateTemp(dir, tmpPrefix+"*")
		if err == nil || !errors.Is(err, fs.ErrNotExist) {
			break
		}
	}
	if err != nil {
		return "", err
	}
	tmp := f.Name()
	fail := func(err error) (string, error) {
		f.Close()
		os.Remove(tmp)
		return "", err
	}
	// Like S3, store exactly size bytes and ignore what follows them.
	var src io.Reader = ctxReader{ctx: ctx, r: r}
	if size >= 0 {
		src = io.LimitReader(src, size)
	}
	n, err := io.Copy(f, src)
	if err != nil {
		return fail(fmt.Errorf("write: %w", err))
	}
	if size >= 0 && n != size {
		return fail(fmt.Errorf("reader ended after %d of %d bytes", n, size))
	}
	if err := f.Sync(); err != nil {
		return fail(fmt.Errorf("fsync: %w", err))
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("close: %w", err)
	}
	return tmp, nil
}

// mkdirAllSync creates dir and its missing parents inside the root, fsyncing
// each parent that gained an entry so the new path survives a power loss.
func (l *Local) mkdirAllSync(dir string) error {
	fi, err := os.Stat(dir)
	if err == nil {
		if fi.IsDir() {
			return nil
		}
		return fmt.Errorf("%s: %w (a parent of the key is an object)", dir, syscall.ENOTDIR)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if dir == l.root || len(dir) < len(l.root) {
		return fmt.Errorf("bucket root %s: %w", l.root, err)
	}
	parent := filepath.Dir(dir)
	if err := l.mkdirAllSync(parent); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return syncDir(parent)
}

// Delete removes the object and then the directories it leaves empty.
func (l *Local) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	p, err := l.path(key)
	if err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	fi, err := os.Lstat(p)
	if err != nil {
		if errors.Is(mapNotExist(err), ErrNotExist) {
			return nil
		}
		return fmt.Errorf("delete %s: %w", key, err)
	}
	if fi.IsDir() {
		return nil // a "directory" of other keys is not an object
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	// Best effort: rmdir fails on a non-empty directory, which ends the
	// pruning; a writer racing into a pruned directory recreates it.
	for dir := filepath.Dir(p); dir != l.root && strings.HasPrefix(dir, l.root); dir = filepath.Dir(dir) {
		if os.Remove(dir) != nil {
			break
		}
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory for fsync: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}

// ctxReader stops a long copy when the context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
