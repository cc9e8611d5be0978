package inspect

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
)

// lakeSummary says that a summary read a lake's committed set, not every
// object under the prefix.
type lakeSummary struct {
	// Root is the lake the path lies in: a directory or s3://bucket/prefix.
	Root   string   `json:"root"`
	Tables []string `json:"tables"`
	// NotCommitted counts the objects under the path that no reader sees:
	// replaced by a compaction (deleted after a grace period), or orphans of
	// a crashed or failed flush. They are left out of the totals.
	NotCommitted int `json:"not_committed"`
}

// committedSet is the keys of the live raw and dead-letter objects of every
// table of a lake, relative to its root.
type committedSet struct {
	root   string
	tables []string
	live   map[string]bool
	// keyOf gives an object's key relative to the root, false if it lies
	// outside the lake.
	keyOf func(obj inspectObject) (string, bool)
}

// errFound stops a listing at its first object.
var errFound = errors.New("found")

// findCommittedSet looks for the lake that target lies in (target itself or
// an ancestor holding commit records under _sluice/commits/) and reads its
// committed set the way every reader must (lake.CommitLog.LiveObjects):
// objects named by commit records, with compactions applied. It returns nil
// when target is not inside a lake (e.g. a summary store or a loose file).
func findCommittedSet(ctx context.Context, o Options, target string) (*committedSet, error) {
	if rest, ok := strings.CutPrefix(target, "s3://"); ok {
		return findS3CommittedSet(ctx, o, rest)
	}
	abs, err := filepath.Abs(target)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, err
	}
	base := abs
	if !fi.IsDir() {
		base = filepath.Dir(abs)
	}
	for root := base; ; root = filepath.Dir(root) {
		if st, err := os.Stat(filepath.Join(root, filepath.FromSlash(lake.CommitsRoot))); err == nil && st.IsDir() {
			b, err := objstore.NewLocal(root)
			if err != nil {
				return nil, err
			}
			cs, err := readCommittedSet(ctx, b, root)
			if err != nil || cs == nil {
				return cs, err
			}
			rel, err := filepath.Rel(root, abs)
			if err != nil || !cs.holds(filepath.ToSlash(rel)) {
				return nil, nil
			}
			cs.keyOf = func(obj inspectObject) (string, bool) {
				p := abs
				if fi.IsDir() {
					p = filepath.Join(abs, filepath.FromSlash(obj.name))
				}
				rel, err := filepath.Rel(root, p)
				if err != nil || strings.HasPrefix(rel, "..") {
					return "", false
				}
				return filepath.ToSlash(rel), true
			}
			return cs, nil
		}
		if parent := filepath.Dir(root); parent == root {
			return nil, nil
		}
	}
}

func findS3CommittedSet(ctx context.Context, o Options, rest string) (*committedSet, error) {
	bucket, prefix, _ := strings.Cut(rest, "/")
	cfg := o.S3
	cfg.Bucket = bucket
	b, err := objstore.NewS3(cfg, o.Logger)
	if err != nil {
		return nil, err
	}
	// Candidate roots: the prefix's directories, deepest first, down to the
	// bucket itself.
	dir := strings.TrimSuffix(prefix, "/")
	if !strings.HasSuffix(prefix, "/") {
		dir = path.Dir(prefix) // a prefix naming one object or a partial name
	}
	for {
		if dir == "." || dir == "/" {
			dir = ""
		}
		root := ""
		if dir != "" {
			root = dir + "/"
		}
		err := b.Iter(ctx, root+lake.CommitsRoot, func(objstore.ObjectAttrs) error { return errFound })
		switch {
		case errors.Is(err, errFound):
			rc := cfg
			rc.Prefix = strings.TrimSuffix(root, "/")
			rb, err := objstore.NewS3(rc, o.Logger)
			if err != nil {
				return nil, err
			}
			cs, err := readCommittedSet(ctx, rb, "s3://"+bucket+"/"+root)
			if err != nil || cs == nil {
				return cs, err
			}
			if !cs.holds(strings.TrimPrefix(prefix, root)) {
				return nil, nil
			}
			cs.keyOf = func(obj inspectObject) (string, bool) { return strings.CutPrefix(obj.name, root) }
			return cs, nil
		case err != nil:
			return nil, fmt.Errorf("look for commit records under s3://%s/%s: %w", bucket, root, err)
		}
		if dir == "" {
			return nil, nil
		}
		dir = path.Dir(dir)
	}
}

func readCommittedSet(ctx context.Context, b objstore.Bucket, root string) (*committedSet, error) {
	log := lake.NewCommitLog(b)
	tables, err := log.Tables(ctx)
	if err != nil {
		return nil, err
	}
	if len(tables) == 0 {
		return nil, nil
	}
	cs := &committedSet{root: root, tables: tables, live: map[string]bool{}}
	for _, t := range tables {
		raw, err := log.LiveObjects(ctx, t)
		if err != nil {
			return nil, fmt.Errorf("read the committed set of %s: %w", t, err)
		}
		dead, err := log.LiveDeadLetters(ctx, t)
		if err != nil {
			return nil, fmt.Errorf("read the committed set of %s: %w", t, err)
		}
		for _, o := range append(raw, dead...) {
			cs.live[o.Key] = true
		}
	}
	return cs, nil
}

// holds reports whether the key path rel (relative to the lake's root)
// lies in the lake's own layout: the root itself, a table's objects, the
// dead letters or the lake's records. A directory that merely lies under
// the root (e.g. another store nested in it) does not.
func (cs *committedSet) holds(rel string) bool {
	first, _, _ := strings.Cut(strings.TrimPrefix(rel, "./"), "/")
	if first == "" || first == "." || first+"/" == lake.DeadLetterRoot || first == "_sluice" {
		return true
	}
	return slices.Contains(cs.tables, first)
}

// filter keeps the Parquet and dead-letter objects in the committed set;
// commit records and other JSON objects are kept as they are. It returns
// how many data objects it left out.
func (cs *committedSet) filter(objs []inspectObject) (kept []inspectObject, left int) {
	for _, obj := range objs {
		if obj.kind == kindJSON {
			kept = append(kept, obj)
			continue
		}
		if key, ok := cs.keyOf(obj); ok && cs.live[key] {
			kept = append(kept, obj)
			continue
		}
		left++
	}
	return kept, left
}
