package inbox

import (
	"errors"
	"fmt"
	"time"
)

// Config tunes the batch source (`batch:` in sluice.yaml).
type Config struct {
	// Interval between passes of `sluice batch` (listing, claiming, mapping).
	Interval time.Duration `yaml:"interval"`
	// SplitBytes cuts uncompressed JSON lines and CSV files larger than
	// this into byte ranges mapped in parallel. Larger splits mean fewer
	// chains and objects; smaller ones more parallelism for big files.
	SplitBytes int64 `yaml:"split_bytes"`
	// Parallel is how many splits are mapped at once (0: GOMAXPROCS).
	Parallel int `yaml:"parallel"`
	// Lease is how long a claim holds without renewal; it is renewed every
	// third of it. A process that dies gives its files up after at most this.
	Lease time.Duration `yaml:"lease"`
	// ListPage is how many new keys one pass of incremental listing takes.
	ListPage int `yaml:"list_page"`
	// ReconcileEvery lists the whole inbox against the ledger this often,
	// for files whose keys sort before the cursor (written late, or
	// replaced). Negative: never.
	ReconcileEvery time.Duration `yaml:"reconcile_every"`
	// Replaced is what happens to a file whose key was ingested before with
	// other content (another ETag): refuse (default: record it as refused,
	// count and log it) or version (ingest it as a new version).
	Replaced string `yaml:"replaced"`
	// After is what happens to a source file once all its rows are
	// committed: keep (default), delete, or archive (copy under
	// ArchivePrefix, then delete). A failure here is logged and never
	// causes a re-ingest: the ledger already says committed.
	After         string `yaml:"after"`
	ArchivePrefix string `yaml:"archive_prefix"`
	// PruneAfter forgets a finished file's ledger entry once the file has
	// been gone from the inbox (deleted, archived) this long, found by the
	// reconciliation; a file still there is never forgotten. Negative: keep
	// every entry. Dropped again after that, the same key is a new file.
	PruneAfter time.Duration `yaml:"prune_after"`
	// Settle leaves a file alone until it has not changed for this long:
	// for stores where a file can be seen while it is written (a local
	// directory files are copied into). Object stores show an object only
	// once it is whole: leave it 0 there.
	Settle time.Duration `yaml:"settle"`
	// MaxAttempts quarantines a file after this many failed attempts.
	MaxAttempts int `yaml:"max_attempts"`
	// EventsToken authenticates bucket event notifications posted to
	// /events (Authorization: Bearer <token>); empty: the endpoint is off.
	EventsToken string `yaml:"events_token"`
}

// Defaults.
const (
	DefaultInterval       = 30 * time.Second
	DefaultSplitBytes     = 64 << 20
	DefaultLease          = 2 * time.Minute
	DefaultListPage       = 1000
	DefaultReconcileEvery = 10 * time.Minute
	DefaultMaxAttempts    = 5
	DefaultPruneAfter     = 7 * 24 * time.Hour
)

// Named config errors.
var (
	ErrBadReplaced = errors.New("batch.replaced must be refuse or version")
	ErrBadAfter    = errors.New("batch.after must be keep, delete or archive (with archive_prefix)")
	ErrBadLease    = errors.New("batch.lease must be at least 3s")
)

// WithDefaults fills zero fields.
func (c Config) WithDefaults() Config {
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.SplitBytes == 0 {
		c.SplitBytes = DefaultSplitBytes
	}
	if c.Lease == 0 {
		c.Lease = DefaultLease
	}
	if c.ListPage == 0 {
		c.ListPage = DefaultListPage
	}
	if c.ReconcileEvery == 0 {
		c.ReconcileEvery = DefaultReconcileEvery
	}
	if c.Replaced == "" {
		c.Replaced = "refuse"
	}
	if c.After == "" {
		c.After = "keep"
	}
	if c.PruneAfter == 0 {
		c.PruneAfter = DefaultPruneAfter
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	return c
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case c.Replaced != "refuse" && c.Replaced != "version":
		return fmt.Errorf("%w (got %q)", ErrBadReplaced, c.Replaced)
	case c.After != "keep" && c.After != "delete" && !(c.After == "archive" && c.ArchivePrefix != ""):
		return fmt.Errorf("%w (got %q)", ErrBadAfter, c.After)
	case c.Lease < 3*time.Second:
		return fmt.Errorf("%w (got %s)", ErrBadLease, c.Lease)
	case c.SplitBytes < 0 || c.Parallel < 0 || c.ListPage < 0:
		return errors.New("batch: split_bytes, parallel and list_page must not be negative")
	}
	return nil
}
