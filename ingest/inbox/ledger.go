package inbox

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
)

// The ledger is the inbox's state table, kept in the lake like the commit
// chains: one entry object per (file, version), created conditionally and
// replaced only if it is still the version the writer read, so two batch
// processes never both own a file, and a process whose lease ran out cannot
// overwrite its successor's progress (fencing by epoch and version).
//
//	_sluice/inbox/<table>/files/<hex(key)>.<version>.json   the entry: state, lease, splits
//	_sluice/inbox/<table>/open/<hex(key)>.<version>         a file claimed and not yet finished
//	_sluice/inbox/<table>/cursor.json                       incremental listing starts after this key
//
// Entry keys encode the file's key in hex, which keeps the byte order of the
// keys (and '.' sorts below every hex digit), so one listing of files/ comes
// in the same order as a listing of the inbox: the full reconciliation is a
// merge of two sorted listings in constant memory. Finding and claiming a
// file costs the same few calls however many entries the ledger holds: the
// cursor, one listing page after it, one listing of the candidate's entries,
// the open marker and the entry; finished files leave open/, so the open
// set stays as small as the work in progress.

// Entry states.
const (
	StateClaimed     = "claimed"     // a process holds the lease and maps its splits
	StateFailed      = "failed"      // the last attempt failed; claimable again after a backoff
	StateCommitted   = "committed"   // every split's rows are committed
	StateQuarantined = "quarantined" // unreadable (corrupt compression, bad Parquet); never retried by itself
	StateRefused     = "refused"     // a new version of an ingested key under the refuse policy
)

// Entry is the ledger's record of one version of one file.
type Entry struct {
	Key         string    `json:"key"`     // the file's key in the inbox store
	Version     string    `json:"version"` // its ETag (or size and time where the store has none)
	Size        int64     `json:"size"`
	Format      string    `json:"format"`
	Compression string    `json:"compression,omitempty"` // none, gzip or zstd once known
	State       string    `json:"state"`
	Epoch       int64     `json:"epoch"`  // raised by every claim: the fence
	Holder      string    `json:"holder"` // the process that holds (or last held) the lease
	LeaseUntil  time.Time `json:"lease_until,omitzero"`
	Attempts    int       `json:"attempts"`
	Error       string    `json:"error,omitempty"`
	Replaces    string    `json:"replaces,omitempty"` // the earlier version this one follows (version policy)
	Splits      []Split   `json:"splits,omitempty"`   // planned once, at the first claim
	Records     int64     `json:"records"`            // lines or rows delivered, dead letters included
	UpdatedAt   time.Time `json:"updated_at"`
}

// Done reports whether the entry is final: nothing more will be ingested.
func (e Entry) Done() bool {
	return e.State == StateCommitted || e.State == StateQuarantined || e.State == StateRefused
}

// Split is one piece of a file, mapped on its own chain.
type Split struct {
	Index int `json:"index"`
	// Start and End are a byte range of the (uncompressed) file for JSON
	// lines and CSV, whose lines starting in [Start, End) belong to the
	// split; for Parquet, the row group; for compressed files, 0 and the size.
	Start int64 `json:"start"`
	End   int64 `json:"end"`
	// Lines is how many positions (records or rows) the split had, once
	// done. A split's positions number its records from 0 (blank lines
	// included); a record is a line, except that a CSV record may span
	// lines (a newline inside quotes).
	Lines int64 `json:"lines"`
	Done  bool  `json:"done"`
}

// ledgerStore is what the ledger needs of the lake's store.
type ledgerStore interface {
	objstore.BucketReader
	PutIfAbsent(ctx context.Context, key string, data []byte) error
	GetVersion(ctx context.Context, key string) (data []byte, version string, err error)
	PutIfMatch(ctx context.Context, key string, data []byte, version string) error
	Delete(ctx context.Context, key string) error
}

// Ledger reads and writes one table's inbox ledger.
type Ledger struct {
	b     ledgerStore
	table string
	now   func() time.Time
}

// ErrLostClaim is wrapped by updates of an entry that another process
// claimed (or finished) since it was read: the caller no longer owns it.
var ErrLostClaim = errors.New("inbox: the claim was lost to another process")

// NewLedger returns the ledger of table in b, which must honour
// conditional writes.
func NewLedger(b objstore.Bucket, table string) (*Ledger, error) {
	ls, ok := b.(ledgerStore)
	if !ok {
		return nil, fmt.Errorf("inbox ledger: store %s does not support conditional replace", b.Name())
	}
	return &Ledger{b: ls, table: table, now: time.Now}, nil
}

func (l *Ledger) filesPrefix() string { return lake.InboxEntriesPrefix(l.table) }
func (l *Ledger) openPrefix() string  { return lake.InboxOpenPrefix(l.table) }
func (l *Ledger) cursorKey() string   { return lake.InboxCursorKey(l.table) }

// fileID names a (key, version) in the ledger's keys; see the layout above.
func fileID(key, version string) string {
	return hex.EncodeToString([]byte(key)) + "." + safeVersion(version)
}

func safeVersion(v string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		}
		return '_'
	}, v)
}

// parseID returns the key and version of an entry or marker name.
func parseID(name string) (key, version string, ok bool) {
	name = strings.TrimSuffix(name, ".json")
	h, v, found := strings.Cut(name, ".")
	if !found {
		return "", "", false
	}
	k, err := hex.DecodeString(h)
	if err != nil {
		return "", "", false
	}
	return string(k), v, true
}

func (l *Ledger) entryKey(key, version string) string {
	return lake.InboxEntryKey(l.table, fileID(key, version))
}

func (l *Ledger) openKey(key, version string) string {
	return lake.InboxOpenKey(l.table, fileID(key, version))
}

// Get reads the entry of (key, version) and its store version; found is
// false if there is none.
func (l *Ledger) Get(ctx context.Context, key, version string) (e Entry, tag string, found bool, err error) {
	data, tag, err := l.b.GetVersion(ctx, l.entryKey(key, version))
	if objstore.IsNotExist(err) {
		return Entry{}, "", false, nil
	}
	if err != nil {
		return Entry{}, "", false, fmt.Errorf("ledger: read %s: %w", key, err)
	}
	if err := json.Unmarshal(data, &e); err != nil {
		return Entry{}, "", false, fmt.Errorf("ledger: entry of %s is not valid: %w", key, err)
	}
	return e, tag, true, nil
}

// Versions lists the versions the ledger has entries for under key (one
// listing call).
func (l *Ledger) Versions(ctx context.Context, key string) ([]string, error) {
	prefix := l.filesPrefix() + hex.EncodeToString([]byte(key)) + "."
	var out []string
	err := l.b.Iter(ctx, prefix, func(a objstore.ObjectAttrs) error {
		name := strings.TrimPrefix(a.Key, l.filesPrefix())
		if k, v, ok := parseID(name); ok && k == key {
			out = append(out, v)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("ledger: list versions of %s: %w", key, err)
	}
	return out, nil
}

// Create writes a new entry; it reports false if one exists already.
func (l *Ledger) Create(ctx context.Context, e Entry) (tag string, created bool, err error) {
	e.UpdatedAt = l.now().UTC()
	data, err := json.Marshal(e)
	if err != nil {
		return "", false, err
	}
	if !e.Done() {
		// The open marker first: a crash after it leaves a marker the next
		// pass looks at, never an open entry nobody lists.
		if err := l.b.PutIfAbsent(ctx, l.openKey(e.Key, e.Version), []byte(`{}`)); err != nil && !objstore.IsExists(err) {
			return "", false, fmt.Errorf("ledger: mark %s open: %w", e.Key, err)
		}
	}
	err = l.b.PutIfAbsent(ctx, l.entryKey(e.Key, e.Version), data)
	if objstore.IsExists(err) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("ledger: create entry of %s: %w", e.Key, err)
	}
	// The version of what we wrote: read back once (the store's tag).
	_, tag, found, err := l.Get(ctx, e.Key, e.Version)
	if err != nil {
		return "", false, err
	}
	if !found {
		return "", false, fmt.Errorf("ledger: entry of %s vanished after its creation", e.Key)
	}
	return tag, true, nil
}

// Update replaces the entry if it is still at tag; it returns the new tag,
// or an error wrapping ErrLostClaim if another process changed it.
func (l *Ledger) Update(ctx context.Context, e Entry, tag string) (string, error) {
	e.UpdatedAt = l.now().UTC()
	data, err := json.Marshal(e)
	if err != nil {
		return "", err
	}
	key := l.entryKey(e.Key, e.Version)
	if err := l.b.PutIfMatch(ctx, key, data, tag); err != nil {
		if objstore.IsChanged(err) {
			return "", fmt.Errorf("ledger: update %s: %w", e.Key, ErrLostClaim)
		}
		return "", fmt.Errorf("ledger: update %s: %w", e.Key, err)
	}
	got, newTag, err := l.b.GetVersion(ctx, key)
	if err != nil {
		return "", fmt.Errorf("ledger: update %s: read back: %w", e.Key, err)
	}
	var check Entry
	if json.Unmarshal(got, &check) != nil || check.Epoch != e.Epoch || check.Holder != e.Holder || !check.UpdatedAt.Equal(e.UpdatedAt) {
		return "", fmt.Errorf("ledger: update %s: %w", e.Key, ErrLostClaim)
	}
	return newTag, nil
}

// Close removes the open marker of a finished entry. A crash before it
// leaves a marker whose entry is done; the next pass removes it.
func (l *Ledger) Close(ctx context.Context, key, version string) error {
	return l.b.Delete(ctx, l.openKey(key, version))
}

// Forget deletes the entry of (key, version) and its open marker.
func (l *Ledger) Forget(ctx context.Context, key, version string) error {
	if err := l.b.Delete(ctx, l.openKey(key, version)); err != nil {
		return err
	}
	return l.b.Delete(ctx, l.entryKey(key, version))
}

// Open lists the (key, version) pairs marked open: claimed, failed or
// abandoned files to look at again.
func (l *Ledger) Open(ctx context.Context, fn func(key, version string) error) error {
	return l.b.Iter(ctx, l.openPrefix(), func(a objstore.ObjectAttrs) error {
		k, v, ok := parseID(strings.TrimPrefix(a.Key, l.openPrefix()))
		if !ok {
			return nil
		}
		return fn(k, v)
	})
}

// Each lists every entry's (key, version) in key order without reading the
// entries: the reconciliation's side of the merge.
func (l *Ledger) Each(ctx context.Context, fn func(key, version string) error) error {
	return l.b.Iter(ctx, l.filesPrefix(), func(a objstore.ObjectAttrs) error {
		k, v, ok := parseID(strings.TrimPrefix(a.Key, l.filesPrefix()))
		if !ok {
			return nil
		}
		return fn(k, v)
	})
}

type cursor struct {
	After     string    `json:"after"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Cursor returns the key incremental listing starts after ("" at first).
func (l *Ledger) Cursor(ctx context.Context) (string, error) {
	data, _, err := l.b.GetVersion(ctx, l.cursorKey())
	if objstore.IsNotExist(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("ledger: read cursor: %w", err)
	}
	var c cursor
	if err := json.Unmarshal(data, &c); err != nil {
		return "", fmt.Errorf("ledger: cursor is not valid: %w", err)
	}
	return c.After, nil
}

// Advance moves the cursor forward to after (never back): every key up to
// it has an entry or is ignored by rule. Racing processes each retry on
// the newer cursor.
func (l *Ledger) Advance(ctx context.Context, after string) error {
	for range 5 {
		data, tag, err := l.b.GetVersion(ctx, l.cursorKey())
		var c cursor
		switch {
		case objstore.IsNotExist(err):
			tag = ""
		case err != nil:
			return fmt.Errorf("ledger: read cursor: %w", err)
		default:
			if err := json.Unmarshal(data, &c); err != nil {
				return fmt.Errorf("ledger: cursor is not valid: %w", err)
			}
		}
		if after <= c.After {
			return nil
		}
		out, _ := json.Marshal(cursor{After: after, UpdatedAt: l.now().UTC()})
		if tag == "" {
			err = l.b.PutIfAbsent(ctx, l.cursorKey(), out)
		} else {
			err = l.b.PutIfMatch(ctx, l.cursorKey(), out, tag)
		}
		if err == nil {
			return nil
		}
		if !objstore.IsExists(err) && !objstore.IsChanged(err) {
			return fmt.Errorf("ledger: advance cursor: %w", err)
		}
	}
	return nil // others keep moving it; the next pass tries again
}
