package inspect

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/sluicehq/sluice/objstore"
)

// Options say what to inspect and how to print it.
type Options struct {
	Rows            int    // rows (or dead letters) printed per object
	Format          string // table or json
	Summary         bool   // aggregate all objects instead of one report each
	EventTimeColumn string // default: the first TIMESTAMP column
	S3              objstore.S3Config
	Logger          *slog.Logger
}

// UsageError is an error in what the caller asked for (a bad target), as
// opposed to one met while reading.
type UsageError struct{ Err error }

func (e UsageError) Error() string { return e.Err.Error() }
func (e UsageError) Unwrap() error { return e.Err }

// objKind is what an object holds, judged by its name.
type objKind int

const (
	kindParquet objKind = iota
	kindJSON            // a commit record, or some other JSON document
	kindJSONL           // dead letters
)

func kindOf(name string) (objKind, bool) {
	switch {
	case strings.HasSuffix(name, ".parquet"):
		return kindParquet, true
	case strings.HasSuffix(name, ".jsonl"):
		return kindJSONL, true
	case strings.HasSuffix(name, ".json"):
		return kindJSON, true
	}
	return 0, false
}

// inspectObject is one thing to inspect, wherever it lives.
type inspectObject struct {
	name string
	size int64
	kind objKind
	// openAt gives random access, which Parquet needs (footer first).
	openAt func(ctx context.Context) (io.ReaderAt, io.Closer, error)
	// open streams the object from the start.
	open func(ctx context.Context) (io.ReadCloser, error)
}

// Run inspects target (a local file or directory, or s3://bucket/prefix)
// and prints the reports to w.
func Run(ctx context.Context, w io.Writer, o Options, target string) error {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	objs, err := listInspectObjects(ctx, o, target)
	if err != nil {
		return err
	}
	if len(objs) == 0 {
		return fmt.Errorf("inspect %s: no .parquet, .json or .jsonl objects found", target)
	}
	out := newInspectPrinter(w, o)
	if o.Summary {
		// Over a lake, a summary counts what readers see: the committed set,
		// not also the objects a compaction replaced or a failed flush left.
		cs, err := findCommittedSet(ctx, o, target)
		if err != nil {
			return fmt.Errorf("inspect %s: %w", target, err)
		}
		var lake *lakeSummary
		if cs != nil {
			var left int
			objs, left = cs.filter(objs)
			lake = &lakeSummary{Root: cs.root, Tables: cs.tables, NotCommitted: left}
		}
		return inspectSummary(ctx, out, o, target, objs, lake)
	}
	var failed int
	for _, obj := range objs {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := inspectOne(ctx, out, o, obj); err != nil {
			failed++
			out.objectError(obj.name, err)
		}
	}
	if failed > 0 {
		return fmt.Errorf("inspect %s: %d of %d objects could not be read", target, failed, len(objs))
	}
	return nil
}

func inspectOne(ctx context.Context, out *inspectPrinter, o Options, obj inspectObject) error {
	switch obj.kind {
	case kindParquet:
		rep, err := inspectParquet(ctx, obj, o.Rows, o.EventTimeColumn)
		if err != nil {
			return err
		}
		return out.parquet(rep)
	case kindJSON:
		rep, err := inspectJSONObject(ctx, obj)
		if err != nil {
			return err
		}
		return out.jsonObject(rep)
	default:
		rep, err := inspectDeadLetters(ctx, obj, o.Rows)
		if err != nil {
			return err
		}
		return out.deadLetters(rep)
	}
}

// listInspectObjects resolves target into objects in name order.
func listInspectObjects(ctx context.Context, o Options, target string) ([]inspectObject, error) {
	if rest, ok := strings.CutPrefix(target, "s3://"); ok {
		return listS3Objects(ctx, o, rest)
	}
	fi, err := os.Stat(target)
	if err != nil {
		return nil, fmt.Errorf("inspect %s: %w", target, err)
	}
	if !fi.IsDir() {
		kind, ok := kindOf(target)
		if !ok {
			// A single named file may lack the usual extension; Parquet is
			// recognisable by its magic bytes.
			if !hasParquetMagic(target) {
				return nil, fmt.Errorf("inspect %s: not a .parquet, .json or .jsonl file", target)
			}
			kind = kindParquet
		}
		return []inspectObject{localObject(target, target, fi.Size(), kind)}, nil
	}
	var objs []inspectObject
	err = filepath.WalkDir(target, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		kind, ok := kindOf(d.Name())
		if !ok {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(target, path)
		if err != nil {
			rel = path
		}
		objs = append(objs, localObject(path, filepath.ToSlash(rel), info.Size(), kind))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("walk %s: %w", target, err)
	}
	return objs, nil
}

func hasParquetMagic(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var b [4]byte
	_, err = io.ReadFull(f, b[:])
	return err == nil && string(b[:]) == "PAR1"
}

func localObject(path, name string, size int64, kind objKind) inspectObject {
	return inspectObject{
		name: name,
		size: size,
		kind: kind,
		openAt: func(context.Context) (io.ReaderAt, io.Closer, error) {
			f, err := os.Open(path)
			if err != nil {
				return nil, nil, err
			}
			return f, f, nil
		},
		open: func(context.Context) (io.ReadCloser, error) { return os.Open(path) },
	}
}

// listS3Objects lists bucket/prefix; a prefix naming one object exactly
// inspects just that object.
func listS3Objects(ctx context.Context, o Options, rest string) ([]inspectObject, error) {
	bucket, prefix, _ := strings.Cut(rest, "/")
	if bucket == "" {
		return nil, UsageError{fmt.Errorf("inspect s3://%s: no bucket", rest)}
	}
	cfg := o.S3
	cfg.Bucket = bucket
	if err := cfg.Validate(); err != nil {
		return nil, UsageError{err}
	}
	b, err := objstore.NewS3(cfg, o.Logger)
	if err != nil {
		return nil, err
	}
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		attrs, err := b.Attributes(ctx, prefix)
		if err == nil {
			kind, ok := kindOf(prefix)
			if !ok {
				kind = kindParquet
			}
			return []inspectObject{bucketObject(b, attrs, prefix, kind)}, nil
		}
		if !objstore.IsNotExist(err) {
			return nil, fmt.Errorf("inspect s3://%s: %w", rest, err)
		}
	}
	var objs []inspectObject
	err = b.Iter(ctx, prefix, func(a objstore.ObjectAttrs) error {
		if kind, ok := kindOf(a.Key); ok {
			objs = append(objs, bucketObject(b, a, a.Key, kind))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list s3://%s: %w", rest, err)
	}
	sort.Slice(objs, func(i, j int) bool { return objs[i].name < objs[j].name })
	return objs, nil
}

func bucketObject(b objstore.BucketReader, a objstore.ObjectAttrs, key string, kind objKind) inspectObject {
	return inspectObject{
		name: key,
		size: a.Size,
		kind: kind,
		openAt: func(ctx context.Context) (io.ReaderAt, io.Closer, error) {
			return objstore.NewReaderAt(ctx, b, key, a.Size), io.NopCloser(nil), nil
		},
		open: func(ctx context.Context) (io.ReadCloser, error) { return b.Get(ctx, key) },
	}
}
