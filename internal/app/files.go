package app

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sluicehq/sluice/internal/config"
	"github.com/sluicehq/sluice/internal/lakefiles"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
)

// FilesOptions are the flags of `sluice files`.
type FilesOptions struct {
	ConfigPath string
	LakeDir    string
	Format     string
	Kind       string
	View       string
	Output     string
}

// Files prints exactly the committed objects of table, as paths, a DuckDB
// view or JSON.
func Files(ctx context.Context, c Console, o FilesOptions, table string) error {
	switch {
	case (o.ConfigPath == "") == (o.LakeDir == ""):
		return Usagef("give exactly one of --config and --lake")
	case o.Format != lakefiles.FormatList && o.Format != lakefiles.FormatDuckDB && o.Format != lakefiles.FormatJSON:
		return Usagef("--format %q: want list, duckdb or json", o.Format)
	case o.Kind != lake.KindRaw && o.Kind != lake.KindDeadLetter:
		return Usagef("--kind %q: want %s or %s", o.Kind, lake.KindRaw, lake.KindDeadLetter)
	}
	if err := lake.ValidateCommitNames(table, "s", "p"); err != nil {
		return Usagef("table %q: %v", table, err)
	}
	b, locate, s3cfg, err := openFilesLake(ctx, c, o)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	err = lakefiles.Write(ctx, &buf, lake.NewCommitLog(b).WithLogger(c.Logger), table, lakefiles.Options{
		Format: o.Format, Kind: o.Kind, View: o.View, Locate: locate, S3: s3cfg,
	})
	if err != nil {
		return err
	}
	if o.Output == "" {
		_, err := c.Stdout.Write(buf.Bytes())
		return err
	}
	return writeFileAtomic(o.Output, buf.Bytes())
}

// openFilesLake opens the lake read-only: unlike the ingester it never
// creates the directory or the bucket.
func openFilesLake(ctx context.Context, c Console, o FilesOptions) (objstore.Bucket, lakefiles.Locator, *objstore.S3Config, error) {
	dir := o.LakeDir
	if o.ConfigPath != "" {
		cfg, err := config.Load(o.ConfigPath)
		if err != nil {
			return nil, nil, nil, err
		}
		if s3 := cfg.Store.S3; s3 != nil {
			s, err := objstore.NewS3(*s3, c.Logger)
			if err != nil {
				return nil, nil, nil, fmt.Errorf("open s3 store: %w", err)
			}
			b := objstore.NewRetrying(s, objstore.DefaultRetryPolicy(), c.Logger, nil)
			return b, lakefiles.S3Locator(*s3), s3, nil
		}
		dir = cfg.Store.LocalDir
	}
	if st, err := os.Stat(filepath.Join(dir, filepath.FromSlash(lake.CommitsRoot))); err != nil || !st.IsDir() {
		return nil, nil, nil, fmt.Errorf("%s is not a lake: it has no %s directory", dir, lake.CommitsRoot)
	}
	b, err := objstore.NewLocal(dir)
	if err != nil {
		return nil, nil, nil, err
	}
	locate, err := lakefiles.LocalLocator(dir)
	if err != nil {
		return nil, nil, nil, err
	}
	return b, locate, nil, nil
}

// writeFileAtomic writes data to path through a temporary file in the same
// directory, so a failed run never leaves half a list behind.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
