package main

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/objstore"
)

// inspectOptions are the flags of `sluice inspect`.
type inspectOptions struct {
	rows            int
	format          string
	summary         bool
	eventTimeColumn string
	s3              objstore.S3Config
}

func newInspectCmd(g *globals) *cobra.Command {
	var o inspectOptions
	cmd := &cobra.Command{
		Use:   "inspect PATH|DIR|s3://BUCKET/PREFIX",
		Short: "Show the schema, row counts, event-time range and first rows of Parquet objects, commit records and dead letters",
		Long: `Inspect what Sluice wrote.

PATH may be a local file, a local directory (walked for *.parquet, *.json and
*.jsonl), or s3://bucket/key-or-prefix. For Parquet objects it prints the schema
(physical and logical types), rows, row groups, size, compression, the
event-time range of the first TIMESTAMP column (from statistics, or by scanning
when a row group has none) and the first -n rows. A .json object is shown as a
commit record when it is one; a .jsonl object as dead letters with a count per
reason.

With --summary, Parquet objects under the prefix are aggregated: totals, the
union of event-time ranges, and the distinct schemas. Inside a lake (a
directory or prefix with commit records under _sluice/commits/) only the
committed set counts, as every reader sees it: objects a compaction replaced
and orphans of failed flushes are left out (and counted as not committed).

S3 credentials: --s3-access-key/--s3-secret-key, or else AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY, the shared credentials file, or the instance role.`,
		Example: `  sluice inspect ./sluice-data/lake/events/dt=2026-01-01/hour=00/
  sluice inspect --summary -n 0 ./sluice-data/lake/events
  sluice inspect --format json -n 3 s3://lake/events/dt=2026-01-01/ --s3-endpoint 127.0.0.1:9000 --s3-insecure --s3-path-style`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.rows < 0 {
				return usageErrorf("-n %d: must not be negative", o.rows)
			}
			if o.format != "table" && o.format != "json" {
				return usageErrorf("--format %q: want table or json", o.format)
			}
			return runInspect(cmd.Context(), g, o, args[0])
		},
	}
	f := cmd.Flags()
	f.IntVarP(&o.rows, "rows", "n", 5, "number of rows (or dead letters) to print per object; 0 for none")
	f.StringVar(&o.format, "format", "table", "output format: table (for people) or json (one JSON object per line)")
	f.BoolVar(&o.summary, "summary", false, "aggregate all Parquet objects under the path instead of one report each")
	f.StringVar(&o.eventTimeColumn, "event-time-column", "", "column whose min/max is the event-time range (default: the first TIMESTAMP column)")
	f.StringVar(&o.s3.Endpoint, "s3-endpoint", "", "S3 endpoint host[:port] (default AWS)")
	f.StringVar(&o.s3.Region, "s3-region", "", "S3 region")
	f.StringVar(&o.s3.AccessKey, "s3-access-key", "", "S3 access key (default: AWS environment, shared file, instance role)")
	f.StringVar(&o.s3.SecretKey, "s3-secret-key", "", "S3 secret key")
	f.BoolVar(&o.s3.Insecure, "s3-insecure", false, "talk plain HTTP to the S3 endpoint")
	f.BoolVar(&o.s3.PathStyle, "s3-path-style", false, "path-style bucket addressing (MinIO, versitygw)")
	f.BoolVar(&o.s3.TLSSkipVerify, "s3-tls-skip-verify", false, "do not verify the S3 endpoint's TLS certificate")
	f.StringVar(&o.s3.CACertFile, "s3-ca-cert", "", "PEM file with CA certificates for the S3 endpoint")
	return cmd
}

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

func runInspect(ctx context.Context, g *globals, o inspectOptions, target string) error {
	objs, err := listInspectObjects(ctx, g, o, target)
	if err != nil {
		return err
	}
	if len(objs) == 0 {
		return fmt.Errorf("inspect %s: no .parquet, .json or .jsonl objects found", target)
	}
	out := newInspectPrinter(g.stdout, o)
	if o.summary {
		// Over a lake, a summary counts what readers see: the committed set,
		// not also the objects a compaction replaced or a failed flush left.
		cs, err := findCommittedSet(ctx, g, o, target)
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

func inspectOne(ctx context.Context, out *inspectPrinter, o inspectOptions, obj inspectObject) error {
	switch obj.kind {
	case kindParquet:
		rep, err := inspectParquet(ctx, obj, o.rows, o.eventTimeColumn)
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
		rep, err := inspectDeadLetters(ctx, obj, o.rows)
		if err != nil {
			return err
		}
		return out.deadLetters(rep)
	}
}

// listInspectObjects resolves target into objects in name order.
func listInspectObjects(ctx context.Context, g *globals, o inspectOptions, target string) ([]inspectObject, error) {
	if rest, ok := strings.CutPrefix(target, "s3://"); ok {
		return listS3Objects(ctx, g, o, rest)
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
func listS3Objects(ctx context.Context, g *globals, o inspectOptions, rest string) ([]inspectObject, error) {
	bucket, prefix, _ := strings.Cut(rest, "/")
	if bucket == "" {
		return nil, usageErrorf("inspect s3://%s: no bucket", rest)
	}
	cfg := o.s3
	cfg.Bucket = bucket
	if err := cfg.Validate(); err != nil {
		return nil, usageError{err}
	}
	b, err := objstore.NewS3(cfg, g.Logger())
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
			return newBlockReaderAt(ctx, b, key, a.Size), io.NopCloser(nil), nil
		},
		open: func(ctx context.Context) (io.ReadCloser, error) { return b.Get(ctx, key) },
	}
}

// blockReaderAt gives Parquet random access to a remote object with ranged
// GETs of whole blocks, cached, so that the many small reads of footer and
// page headers do not each cost a round trip.
type blockReaderAt struct {
	ctx    context.Context
	b      objstore.BucketReader
	key    string
	size   int64
	blocks map[int64][]byte
	order  []int64 // for eviction, oldest first
}

const (
	remoteBlockSize = 1 << 20
	remoteMaxBlocks = 32
)

func newBlockReaderAt(ctx context.Context, b objstore.BucketReader, key string, size int64) *blockReaderAt {
	return &blockReaderAt{ctx: ctx, b: b, key: key, size: size, blocks: make(map[int64][]byte)}
}

func (r *blockReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read %s at %d: negative offset", r.key, off)
	}
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		if pos >= r.size {
			return n, io.EOF
		}
		blk, err := r.block(pos / remoteBlockSize)
		if err != nil {
			return n, err
		}
		n += copy(p[n:], blk[pos%remoteBlockSize:])
	}
	return n, nil
}

func (r *blockReaderAt) block(i int64) ([]byte, error) {
	if blk, ok := r.blocks[i]; ok {
		return blk, nil
	}
	start := i * remoteBlockSize
	length := min(int64(remoteBlockSize), r.size-start)
	rc, err := r.b.GetRange(r.ctx, r.key, start, length)
	if err != nil {
		return nil, fmt.Errorf("read %s [%d, %d): %w", r.key, start, start+length, err)
	}
	defer rc.Close()
	blk := make([]byte, length)
	if _, err := io.ReadFull(rc, blk); err != nil {
		return nil, fmt.Errorf("read %s [%d, %d): %w", r.key, start, start+length, err)
	}
	if len(r.order) >= remoteMaxBlocks {
		delete(r.blocks, r.order[0])
		r.order = r.order[1:]
	}
	r.blocks[i] = blk
	r.order = append(r.order, i)
	return blk, nil
}
