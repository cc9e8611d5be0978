package lakefiles

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
)

// File is one committed object and where a reader finds it.
type File struct {
	// URL is what a reader opens: an absolute file path for a local lake,
	// s3://bucket/prefix/key for S3.
	URL string `json:"url"`
	// Key is the object's key inside the lake.
	Key      string `json:"key"`
	Kind     string `json:"kind"` // lake.KindRaw or lake.KindDeadLetter
	Rows     int64  `json:"rows"`
	Size     int64  `json:"size"` // bytes
	Checksum string `json:"checksum,omitempty"`
	// MinEventTime and MaxEventTime bound the rows' event time, both
	// inclusive (raw objects only).
	MinEventTime *time.Time `json:"min_event_time,omitempty"`
	MaxEventTime *time.Time `json:"max_event_time,omitempty"`
	// Source and Partition of the rows; empty for a compacted object that
	// holds rows of several.
	Source    string `json:"source,omitempty"`
	Partition string `json:"partition,omitempty"`
	// Compaction is the key of the compaction record that created the
	// object, empty for an object written by ingest.
	Compaction  string    `json:"compaction,omitempty"`
	CommittedAt time.Time `json:"committed_at"`
}

// Locator turns an object key into the URL a reader opens.
type Locator func(key string) string

// LocalLocator locates the keys of a local lake rooted at dir as absolute
// file paths, so a list stays valid wherever it is read from.
func LocalLocator(dir string) (Locator, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("locate %s: %w", dir, err)
	}
	return func(key string) string { return filepath.Join(abs, filepath.FromSlash(key)) }, nil
}

// S3Locator locates keys in an S3 lake as s3://bucket/prefix/key.
func S3Locator(cfg objstore.S3Config) Locator {
	prefix := strings.Trim(cfg.Prefix, "/")
	if prefix != "" {
		prefix += "/"
	}
	return func(key string) string { return "s3://" + cfg.Bucket + "/" + prefix + key }
}

// ErrNoTable is wrapped by List's error when the lake holds no commit
// records of the table.
var ErrNoTable = errors.New("no commit records")

// List returns the committed objects of one kind (lake.KindRaw or
// lake.KindDeadLetter) of table: the raw objects of lake.CommitLog's
// LiveObjects (compactions applied), sorted by key, or the dead letters of
// LiveDeadLetters in (source, partition, offset) order. Orphans and
// replaced objects are never in it.
//
// The objects a compaction replaces are deleted a grace period after its
// record (the sweeper's): a list is a snapshot to be read within that time.
func List(ctx context.Context, log *lake.CommitLog, table, kind string, locate Locator) ([]File, error) {
	var objs []lake.LiveObject
	var err error
	switch kind {
	case lake.KindRaw:
		objs, err = log.LiveObjects(ctx, table)
	case lake.KindDeadLetter:
		objs, err = log.LiveDeadLetters(ctx, table)
	default:
		return nil, fmt.Errorf("list %s: kind %q: want %s or %s", table, kind, lake.KindRaw, lake.KindDeadLetter)
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", table, err)
	}
	out := make([]File, 0, len(objs))
	for _, o := range objs {
		f := File{
			URL: locate(o.Key), Key: o.Key, Kind: o.Kind, Rows: o.Rows, Size: o.Size, Checksum: o.Checksum,
			Source: o.Source, Partition: o.Partition, Compaction: o.Compaction, CommittedAt: o.CommittedAt.UTC(),
		}
		if o.MinEventTimeMicros != 0 || o.MaxEventTimeMicros != 0 {
			lo, hi := time.UnixMicro(o.MinEventTimeMicros).UTC(), time.UnixMicro(o.MaxEventTimeMicros).UTC()
			f.MinEventTime, f.MaxEventTime = &lo, &hi
		}
		out = append(out, f)
	}
	return out, nil
}

// WriteList writes one URL per line.
func WriteList(w io.Writer, files []File) error {
	for _, f := range files {
		if _, err := fmt.Fprintln(w, f.URL); err != nil {
			return err
		}
	}
	return nil
}

// WriteJSON writes one JSON object per line.
func WriteJSON(w io.Writer, files []File) error {
	enc := json.NewEncoder(w)
	for _, f := range files {
		if err := enc.Encode(f); err != nil {
			return err
		}
	}
	return nil
}

// DuckDB says how to write a DuckDB script.
type DuckDB struct {
	// View is the name of the view the script creates.
	View string
	// Kind of the files: Parquet rows (lake.KindRaw) or dead letters as
	// JSON lines (lake.KindDeadLetter).
	Kind string
	// S3, when the files are s3:// URLs, adds the httpfs extension and the
	// endpoint settings (never the credentials) before the view.
	S3 *objstore.S3Config
}

// ErrNothingToRead is returned by WriteDuckDB for an empty list: DuckDB
// cannot read an empty list of files, and a view over nothing would have
// no columns.
var ErrNothingToRead = errors.New("no committed objects to read")

// WriteDuckDB writes a DuckDB script that creates (or replaces) a view of
// exactly files:
//
//	CREATE OR REPLACE VIEW "events" AS SELECT * FROM read_parquet([...], union_by_name = true, hive_partitioning = false);
//
// union_by_name reads objects of several schema versions (a column added
// later is NULL in older objects); hive_partitioning is off so the view
// has exactly the table's columns, not also dt and hour from the paths.
// Dead letters are read with read_json as newline-delimited JSON.
func WriteDuckDB(w io.Writer, files []File, d DuckDB) error {
	if len(files) == 0 {
		return fmt.Errorf("view %s: %w", d.View, ErrNothingToRead)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "-- The %d committed %s objects, as listed by `sluice files`.\n", len(files), d.Kind)
	b.WriteString("-- Read them within the sweeper's grace period: objects a later compaction\n")
	b.WriteString("-- replaces are deleted after it. A glob over the table's prefix would also\n")
	b.WriteString("-- read orphans of crashed flushes and objects replaced by compaction.\n")
	if d.S3 != nil {
		writeS3Settings(&b, *d.S3)
	}
	fmt.Fprintf(&b, "CREATE OR REPLACE VIEW %s AS SELECT * FROM ", quoteIdent(d.View))
	switch d.Kind {
	case lake.KindRaw:
		b.WriteString("read_parquet([\n")
	case lake.KindDeadLetter:
		b.WriteString("read_json([\n")
	default:
		return fmt.Errorf("view %s: kind %q: want %s or %s", d.View, d.Kind, lake.KindRaw, lake.KindDeadLetter)
	}
	for i, f := range files {
		// DuckDB expands glob characters in file names and has no escape
		// for them: such a name could read other files.
		if strings.ContainsAny(f.URL, "*?[") {
			return fmt.Errorf("view %s: %s contains a glob character (* ? [), which DuckDB would expand", d.View, f.URL)
		}
		b.WriteString("  " + quoteString(f.URL))
		if i < len(files)-1 {
			b.WriteByte(',')
		}
		b.WriteByte('\n')
	}
	if d.Kind == lake.KindRaw {
		b.WriteString("], union_by_name = true, hive_partitioning = false);\n")
	} else {
		b.WriteString("], format = 'newline_delimited', union_by_name = true, hive_partitioning = false);\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeS3Settings loads httpfs and points it at cfg's endpoint. Credentials
// stay out of the script: the reader sets them in DuckDB before it.
func writeS3Settings(b *strings.Builder, cfg objstore.S3Config) {
	b.WriteString("-- Credentials are not written here; set them in DuckDB first:\n")
	b.WriteString("-- SET s3_access_key_id = '...'; SET s3_secret_access_key = '...';\n")
	b.WriteString("INSTALL httpfs;\nLOAD httpfs;\n")
	if cfg.Endpoint != "" {
		fmt.Fprintf(b, "SET s3_endpoint = %s;\n", quoteString(cfg.Endpoint))
	}
	if cfg.Region != "" {
		fmt.Fprintf(b, "SET s3_region = %s;\n", quoteString(cfg.Region))
	}
	if cfg.PathStyle {
		b.WriteString("SET s3_url_style = 'path';\n")
	}
	if cfg.Insecure {
		b.WriteString("SET s3_use_ssl = false;\n")
	}
}

// quoteString is a SQL string literal.
func quoteString(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// quoteIdent is a SQL identifier, quoted so any table name is one.
func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// Output formats of Write.
const (
	FormatList   = "list"   // one URL per line
	FormatDuckDB = "duckdb" // a DuckDB script creating a view
	FormatJSON   = "json"   // one JSON object per line
)

// Options say what Write lists and how.
type Options struct {
	Format string // FormatList, FormatDuckDB or FormatJSON
	Kind   string // lake.KindRaw or lake.KindDeadLetter
	// View names the DuckDB view; default the table, or
	// <table>_deadletter for dead letters.
	View   string
	Locate Locator
	// S3 is the lake's S3 configuration, nil for a local lake.
	S3 *objstore.S3Config
}

// Write lists the table's committed objects (List) and writes them in
// o.Format: what `sluice files` prints. A table without commit records is
// an error wrapping ErrNoTable, so a misspelt name is not an empty list;
// so is an empty list in FormatDuckDB (ErrNothingToRead).
func Write(ctx context.Context, w io.Writer, log *lake.CommitLog, table string, o Options) error {
	files, err := List(ctx, log, table, o.Kind, o.Locate)
	if err != nil {
		return err
	}
	if len(files) == 0 {
		if err := requireTable(ctx, log, table); err != nil {
			return err
		}
	}
	switch o.Format {
	case FormatList:
		return WriteList(w, files)
	case FormatJSON:
		return WriteJSON(w, files)
	case FormatDuckDB:
	default:
		return fmt.Errorf("list %s: format %q: want %s, %s or %s", table, o.Format, FormatList, FormatDuckDB, FormatJSON)
	}
	view := o.View
	if view == "" {
		view = table
		if o.Kind == lake.KindDeadLetter {
			view = table + "_deadletter"
		}
	}
	err = WriteDuckDB(w, files, DuckDB{View: view, Kind: o.Kind, S3: o.S3})
	if errors.Is(err, ErrNothingToRead) {
		return fmt.Errorf("table %s has no committed %s objects yet, nothing for DuckDB to read: %w", table, o.Kind, err)
	}
	return err
}

// requireTable fails when the lake holds no commit records of table,
// naming the tables it does hold.
func requireTable(ctx context.Context, log *lake.CommitLog, table string) error {
	tables, err := log.Tables(ctx)
	if err != nil {
		return err
	}
	if slices.Contains(tables, table) {
		return nil
	}
	return fmt.Errorf("table %s: %w in this lake (tables with commit records: %v)", table, ErrNoTable, tables)
}
