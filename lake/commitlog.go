package lake

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluicehq/sluice/objstore"

	"golang.org/x/sync/errgroup"
)

// ErrCommitConflict is wrapped by Commit's error when the record cannot take
// its place in the chain: another writer committed that link first (the error
// then also wraps ErrExists), or the record does not start where the chain
// ends. Either way the writer no longer owns the partition's progress: it
// must Resume and redo its work from the chain end.
var ErrCommitConflict = errors.New("commit conflict")

// ErrInvalidCommit is wrapped by Commit's error for a record that is not
// self-consistent; nothing is written.
var ErrInvalidCommit = errors.New("invalid commit record")

// DeadLetterRoot is the prefix of dead-letter objects.
const DeadLetterRoot = "_deadletter/"

// commitFetchParallelism bounds concurrent record reads on a cold scan.
const commitFetchParallelism = 8

// Anomaly is an object in the commit area that is not part of any chain:
// unreadable or inconsistent (garbage), or a valid record that overlaps the
// chain or lies beyond a gap (off-chain). Anomalies are ignored by readers;
// they are reported so an operator can look.
type Anomaly struct {
	Key    string
	Reason string
}

// Chain is the committed history of one source partition.
type Chain struct {
	Table, Source, Partition string
	// Records are the links, in offset order: Records[i+1].FirstOffset ==
	// Records[i].NextOffset.
	Records   []CommitRecord
	Anomalies []Anomaly
}

// End returns where the next record must start, and false for an empty chain.
func (c Chain) End() (int64, bool) {
	if len(c.Records) == 0 {
		return 0, false
	}
	return c.Records[len(c.Records)-1].NextOffset, true
}

// CommitLog reads and extends the commit chains kept in a bucket. It is safe
// for concurrent use.
//
// The chain of a partition starts at its lowest valid record and follows
// NextOffset -> FirstOffset links; the record keys are zero-padded offsets,
// so one sorted listing of the partition's prefix yields the candidates in
// order. Records are immutable once written, so parsed records are cached by
// key (checked against size and modification time) and a Resume or Records
// after the first costs one listing plus reads of new records only.
type CommitLog struct {
	b      objstore.Bucket
	logger *slog.Logger
	now    func() time.Time

	mu    sync.Mutex
	cache map[string]cachedRecord
	ends  map[partitionID]int64       // chain ends seen by this process
	comps map[string]cachedCompaction // compaction records by key; see compaction.go
}

type partitionID struct{ table, source, partition string }

type cachedRecord struct {
	size    int64
	modTime time.Time
	rec     CommitRecord
	bad     string // why the object is garbage; "" for a valid record
}

// NewCommitLog returns a log over b that does not log; see WithLogger.
func NewCommitLog(b objstore.Bucket) *CommitLog {
	return &CommitLog{
		b:      b,
		logger: slog.New(slog.DiscardHandler),
		now:    time.Now,
		cache:  map[string]cachedRecord{},
		ends:   map[partitionID]int64{},
	}
}

// WithLogger sets where anomalies are reported and returns l.
func (l *CommitLog) WithLogger(logger *slog.Logger) *CommitLog {
	if logger != nil {
		l.logger = logger
	}
	return l
}

// ValidateCommitNames checks the names that make up commit keys. Table and
// source must be single path segments (a "/" would make keys of different
// partitions ambiguous); the table must not start with "_", which is
// reserved for Sluice's own areas. A partition may contain "/" (an inbox
// object key), though not empty, "." or ".." segments.
func ValidateCommitNames(table, source, partition string) error {
	for _, n := range []struct{ what, v string }{{"table", table}, {"source", source}} {
		if n.v == "" || strings.Contains(n.v, "/") {
			return fmt.Errorf("%w: %s %q must be one non-empty path segment", ErrInvalidCommit, n.what, n.v)
		}
	}
	if strings.HasPrefix(table, "_") {
		return fmt.Errorf("%w: table %q must not start with \"_\"", ErrInvalidCommit, table)
	}
	if err := objstore.ValidateKey(table + "/" + source + "/" + partition); err != nil {
		return fmt.Errorf("%w: table %q, source %q, partition %q: %v", ErrInvalidCommit, table, source, partition, err)
	}
	return nil
}

// validateRecord checks that rec is self-consistent and its objects sit in
// the table's areas, so Orphans and readers agree on what a record names.
func validateRecord(rec CommitRecord) error {
	if err := ValidateCommitNames(rec.Table, rec.Source, rec.Partition); err != nil {
		return err
	}
	switch {
	case rec.Version != CommitRecordVersion:
		return fmt.Errorf("%w: version %d, want %d", ErrInvalidCommit, rec.Version, CommitRecordVersion)
	case rec.FirstOffset < 0:
		return fmt.Errorf("%w: negative first offset %d", ErrInvalidCommit, rec.FirstOffset)
	case rec.NextOffset <= rec.FirstOffset:
		return fmt.Errorf("%w: next offset %d is not after first offset %d", ErrInvalidCommit, rec.NextOffset, rec.FirstOffset)
	case rec.Records < 0 || rec.DeadLetters < 0:
		return fmt.Errorf("%w: negative counts (records %d, dead letters %d)", ErrInvalidCommit, rec.Records, rec.DeadLetters)
	}
	rawPrefix, dlPrefix := rec.Table+"/", DeadLetterRoot+rec.Table+"/"
	var rows, dead int64
	seen := make(map[string]bool, len(rec.Objects))
	for _, o := range rec.Objects {
		if err := objstore.ValidateKey(o.Key); err != nil {
			return fmt.Errorf("%w: object: %v", ErrInvalidCommit, err)
		}
		if seen[o.Key] {
			return fmt.Errorf("%w: object %q named twice", ErrInvalidCommit, o.Key)
		}
		seen[o.Key] = true
		if o.Rows < 0 || o.Size < 0 {
			return fmt.Errorf("%w: object %q has negative rows or size", ErrInvalidCommit, o.Key)
		}
		switch o.Kind {
		case KindRaw:
			if !strings.HasPrefix(o.Key, rawPrefix) {
				return fmt.Errorf("%w: raw object %q is not under %q", ErrInvalidCommit, o.Key, rawPrefix)
			}
			rows += o.Rows
		case KindDeadLetter:
			if !strings.HasPrefix(o.Key, dlPrefix) {
				return fmt.Errorf("%w: dead-letter object %q is not under %q", ErrInvalidCommit, o.Key, dlPrefix)
			}
			dead += o.Rows
		default:
			return fmt.Errorf("%w: object %q has unknown kind %q", ErrInvalidCommit, o.Key, o.Kind)
		}
	}
	if rows != rec.Records || dead != rec.DeadLetters {
		return fmt.Errorf("%w: objects hold %d rows and %d dead letters, record says %d and %d",
			ErrInvalidCommit, rows, dead, rec.Records, rec.DeadLetters)
	}
	return nil
}

// Commit writes rec as the next link of its partition's chain, with a
// conditional create under CommitKey. Version and CommittedAt are filled in
// when zero. rec must start where the chain ends (as last seen by this log;
// on first use the chain is read). If another writer committed the link
// first the error wraps ErrCommitConflict and ErrExists. Committing the same
// record again (same writer and content, e.g. after an ambiguous network
// error) succeeds without writing.
func (l *CommitLog) Commit(ctx context.Context, rec CommitRecord) error {
	if rec.Version == 0 {
		rec.Version = CommitRecordVersion
	}
	if rec.CommittedAt.IsZero() {
		rec.CommittedAt = l.now().UTC()
	}
	if err := validateRecord(rec); err != nil {
		return fmt.Errorf("commit %s/%s/%s [%d,%d): %w", rec.Table, rec.Source, rec.Partition, rec.FirstOffset, rec.NextOffset, err)
	}
	key := CommitKey(rec.Table, rec.Source, rec.Partition, rec.FirstOffset)
	pid := partitionID{rec.Table, rec.Source, rec.Partition}

	l.mu.Lock()
	end, known := l.ends[pid]
	l.mu.Unlock()
	if !known {
		chain, err := l.Chain(ctx, rec.Table, rec.Source, rec.Partition)
		if err != nil {
			return fmt.Errorf("commit %s: read chain: %w", key, err)
		}
		end, known = chain.End()
	}
	if known && rec.FirstOffset != end {
		if rec.FirstOffset < end {
			// Maybe our own earlier attempt, whose answer was lost.
			if same, err := l.sameRecord(ctx, key, rec); err == nil && same {
				return nil
			}
		}
		return fmt.Errorf("commit %s: %w: record starts at %d but the chain ends at %d", key, ErrCommitConflict, rec.FirstOffset, end)
	}

	data, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("commit %s: encode: %w", key, err)
	}
	err = l.b.PutIfAbsent(ctx, key, data)
	switch {
	case err == nil:
	case errors.Is(err, objstore.ErrExists):
		if same, serr := l.sameRecord(ctx, key, rec); serr == nil && same {
			break
		}
		l.forgetEnd(pid)
		return fmt.Errorf("commit %s: %w: another writer committed offset %d first: %w", key, ErrCommitConflict, rec.FirstOffset, err)
	default:
		// The write may or may not have landed; the next Commit re-reads.
		l.forgetEnd(pid)
		return fmt.Errorf("commit %s: %w", key, err)
	}
	l.mu.Lock()
	l.ends[pid] = rec.NextOffset
	l.mu.Unlock()
	return nil
}

func (l *CommitLog) forgetEnd(pid partitionID) {
	l.mu.Lock()
	delete(l.ends, pid)
	l.mu.Unlock()
}

// sameRecord reports whether the stored record under key is rec, ignoring
// CommittedAt (a retry by the same writer stamps a new time).
func (l *CommitLog) sameRecord(ctx context.Context, key string, rec CommitRecord) (bool, error) {
	rc, err := l.b.Get(ctx, key)
	if err != nil {
		return false, err
	}
	defer rc.Close()
	var got CommitRecord
	if err := json.NewDecoder(io.LimitReader(rc, maxRecordSize)).Decode(&got); err != nil {
		return false, err
	}
	got.CommittedAt, rec.CommittedAt = time.Time{}, time.Time{}
	a, _ := json.Marshal(got)
	b, _ := json.Marshal(rec)
	return string(a) == string(b), nil
}

// maxRecordSize bounds what is read of one commit object, so a huge garbage
// file cannot exhaust memory.
const maxRecordSize = 16 << 20

// Resume returns where the partition's chain ends (the NextOffset of its
// last record), and found=false if it has no records. Anomalies are logged
// and skipped; Chain returns them.
func (l *CommitLog) Resume(ctx context.Context, table, source, partition string) (next int64, found bool, err error) {
	chain, err := l.Chain(ctx, table, source, partition)
	if err != nil {
		return 0, false, err
	}
	next, found = chain.End()
	return next, found, nil
}

// Chain reads the chain of one partition, listing only its prefix.
func (l *CommitLog) Chain(ctx context.Context, table, source, partition string) (Chain, error) {
	if err := ValidateCommitNames(table, source, partition); err != nil {
		return Chain{}, fmt.Errorf("read chain: %w", err)
	}
	prefix := PartitionCommitPrefix(table, source, partition)
	entries, anomalies, err := l.scan(ctx, prefix, func(key string) bool {
		// A partition containing "/" nests under a shorter one's prefix.
		return !strings.Contains(strings.TrimPrefix(key, prefix), "/")
	})
	if err != nil {
		return Chain{}, fmt.Errorf("read chain %s: %w", prefix, err)
	}
	recs, off := buildChain(entries)
	chain := Chain{Table: table, Source: source, Partition: partition, Records: recs, Anomalies: append(anomalies, off...)}
	l.report(prefix, chain.Anomalies)
	pid := partitionID{table, source, partition}
	l.mu.Lock()
	if end, ok := chain.End(); ok {
		l.ends[pid] = end
	} else {
		delete(l.ends, pid)
	}
	l.mu.Unlock()
	return chain, nil
}

// Records returns every record on the chains of a table, ordered by
// (source, partition, first offset). Off-chain records and garbage are left
// out (and logged); Chains returns them.
func (l *CommitLog) Records(ctx context.Context, table string) ([]CommitRecord, error) {
	chains, err := l.Chains(ctx, table)
	if err != nil {
		return nil, err
	}
	var out []CommitRecord
	for _, c := range chains {
		out = append(out, c.Records...)
	}
	return out, nil
}

// Chains reads the chains of every partition of a table, ordered by
// (source, partition). Garbage that cannot be assigned to a partition is
// reported on the first chain, or on an empty Chain if there is none.
func (l *CommitLog) Chains(ctx context.Context, table string) ([]Chain, error) {
	if err := ValidateCommitNames(table, "s", "p"); err != nil {
		return nil, fmt.Errorf("read chains: %w", err)
	}
	prefix := CommitPrefix(table)
	entries, garbage, err := l.scan(ctx, prefix, nil)
	if err != nil {
		return nil, fmt.Errorf("read chains %s: %w", prefix, err)
	}
	groups := map[partitionID][]CommitRecord{}
	for _, r := range entries {
		pid := partitionID{r.Table, r.Source, r.Partition}
		groups[pid] = append(groups[pid], r)
	}
	chains := make([]Chain, 0, len(groups))
	for pid, recs := range groups {
		slices.SortFunc(recs, func(a, b CommitRecord) int { return cmp.Compare(a.FirstOffset, b.FirstOffset) })
		onChain, off := buildChain(recs)
		chains = append(chains, Chain{Table: table, Source: pid.source, Partition: pid.partition, Records: onChain, Anomalies: off})
	}
	slices.SortFunc(chains, func(a, b Chain) int {
		return cmp.Or(cmp.Compare(a.Source, b.Source), cmp.Compare(a.Partition, b.Partition))
	})
	if len(garbage) > 0 {
		if len(chains) == 0 {
			chains = []Chain{{Table: table}}
		}
		chains[0].Anomalies = append(garbage, chains[0].Anomalies...)
	}
	var all []Anomaly
	for _, c := range chains {
		all = append(all, c.Anomalies...)
	}
	l.report(prefix, all)
	return chains, nil
}

// Tables lists the tables that have commit records, sorted.
func (l *CommitLog) Tables(ctx context.Context) ([]string, error) {
	var tables []string
	err := l.b.Iter(ctx, CommitsRoot, func(a objstore.ObjectAttrs) error {
		rest := strings.TrimPrefix(a.Key, CommitsRoot)
		t, _, ok := strings.Cut(rest, "/")
		if ok && t != "" && (len(tables) == 0 || tables[len(tables)-1] != t) {
			tables = append(tables, t)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	return tables, nil
}

// buildChain walks records sorted by FirstOffset from the lowest one and
// returns the chain and the records left off it: those that overlap a link
// (a writer that lost ownership) and all after a gap (nothing may follow a
// missing link, or the chain would skip offsets).
func buildChain(recs []CommitRecord) (chain []CommitRecord, off []Anomaly) {
	for i, r := range recs {
		if len(chain) == 0 {
			chain = append(chain, r)
			continue
		}
		end := chain[len(chain)-1].NextOffset
		switch {
		case r.FirstOffset == end:
			chain = append(chain, r)
		case r.FirstOffset < end:
			off = append(off, Anomaly{Key: CommitKey(r.Table, r.Source, r.Partition, r.FirstOffset),
				Reason: fmt.Sprintf("overlaps the chain: starts at %d, inside a link ending at %d", r.FirstOffset, end)})
		default:
			for _, g := range recs[i:] {
				off = append(off, Anomaly{Key: CommitKey(g.Table, g.Source, g.Partition, g.FirstOffset),
					Reason: fmt.Sprintf("beyond a gap: the chain ends at %d, the next record starts at %d", end, r.FirstOffset)})
			}
			return chain, off
		}
	}
	return chain, off
}

// scan lists prefix and returns the valid records in key order plus the
// garbage found. Records are read in parallel and cached.
func (l *CommitLog) scan(ctx context.Context, prefix string, keep func(key string) bool) ([]CommitRecord, []Anomaly, error) {
	var listed []objstore.ObjectAttrs
	err := l.b.Iter(ctx, prefix, func(a objstore.ObjectAttrs) error {
		if keep == nil || keep(a.Key) {
			listed = append(listed, a)
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	results := make([]cachedRecord, len(listed))
	present := make([]bool, len(listed))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(commitFetchParallelism)
	for i, a := range listed {
		l.mu.Lock()
		c, ok := l.cache[a.Key]
		l.mu.Unlock()
		if ok && c.size == a.Size && c.modTime.Equal(a.LastModified) {
			results[i], present[i] = c, true
			continue
		}
		g.Go(func() error {
			c, found, err := l.load(gctx, a)
			if err != nil {
				return err
			}
			results[i], present[i] = c, found
			if found {
				l.mu.Lock()
				l.cache[a.Key] = c
				l.mu.Unlock()
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}
	var recs []CommitRecord
	var garbage []Anomaly
	for i, c := range results {
		switch {
		case !present[i]:
		case c.bad != "":
			garbage = append(garbage, Anomaly{Key: listed[i].Key, Reason: c.bad})
		default:
			recs = append(recs, c.rec)
		}
	}
	return recs, garbage, nil
}

// load reads and checks one commit object. found is false when it vanished
// since the listing.
func (l *CommitLog) load(ctx context.Context, a objstore.ObjectAttrs) (cachedRecord, bool, error) {
	c := cachedRecord{size: a.Size, modTime: a.LastModified}
	if a.Size > maxRecordSize {
		c.bad = fmt.Sprintf("%d bytes, too large for a commit record", a.Size)
		return c, true, nil
	}
	rc, err := l.b.Get(ctx, a.Key)
	if errors.Is(err, objstore.ErrNotExist) {
		return c, false, nil
	}
	if err != nil {
		return c, false, fmt.Errorf("read commit record: %w", err)
	}
	data, err := io.ReadAll(io.LimitReader(rc, maxRecordSize+1))
	rc.Close()
	if err != nil {
		return c, false, fmt.Errorf("read commit record %s: %w", a.Key, err)
	}
	c.rec, c.bad = parseRecord(a.Key, data)
	if c.bad != "" && c.rec.Version > CommitRecordVersion {
		// Skipping it would break the chain and make this process redo
		// committed work; an older binary must not run on a newer log.
		return c, false, fmt.Errorf("commit record %s: %s", a.Key, c.bad)
	}
	return c, true, nil
}

// parseRecord decodes a commit object and checks it belongs at key; the
// second result says why not.
func parseRecord(key string, data []byte) (CommitRecord, string) {
	var rec CommitRecord
	name := key[strings.LastIndex(key, "/")+1:]
	if !strings.HasSuffix(name, ".json") || len(name) != len("00000000000000000000.json") {
		return rec, "not a commit record name"
	}
	if _, err := strconv.ParseUint(strings.TrimSuffix(name, ".json"), 10, 64); err != nil {
		return rec, "not a commit record name"
	}
	if err := json.Unmarshal(data, &rec); err != nil {
		return rec, "undecodable: " + err.Error()
	}
	if rec.Version > CommitRecordVersion {
		return rec, fmt.Sprintf("version %d is newer than this binary understands (%d)", rec.Version, CommitRecordVersion)
	}
	if err := validateRecord(rec); err != nil {
		return rec, err.Error()
	}
	if want := CommitKey(rec.Table, rec.Source, rec.Partition, rec.FirstOffset); want != key {
		return rec, fmt.Sprintf("content belongs at %s", want)
	}
	return rec, ""
}

func (l *CommitLog) report(prefix string, anomalies []Anomaly) {
	if len(anomalies) == 0 {
		return
	}
	l.logger.Warn("commit log has objects outside the chains; they are ignored",
		"prefix", prefix, "count", len(anomalies), "first_key", anomalies[0].Key, "first_reason", anomalies[0].Reason)
}

// Orphans lists the objects under the table's raw area (<table>/) and
// dead-letter area (_deadletter/<table>/) that no commit record names (on a
// chain or not: a record off the chain still keeps its objects, so cleanup
// never races an operator's repair) and that were last modified more than
// grace ago. grace must exceed the longest flush, from its first object
// upload to its commit, or a slow flush's objects could be taken.
//
// Objects created by compaction records are not orphans. Objects a
// compaction record replaced are, once that record was stored more than
// grace ago, so grace must also exceed the longest read of a reader that
// listed the live objects just before the record (and a compactor must
// commit within grace of its first upload).
//
// Objects are listed before records, so a record committed meanwhile is
// seen.
func (l *CommitLog) Orphans(ctx context.Context, table string, grace time.Duration) ([]objstore.ObjectAttrs, error) {
	if err := ValidateCommitNames(table, "s", "p"); err != nil {
		return nil, fmt.Errorf("find orphans: %w", err)
	}
	if grace < 0 {
		return nil, fmt.Errorf("find orphans of %s: negative grace %s", table, grace)
	}
	cutoff := l.now().Add(-grace)
	var candidates []objstore.ObjectAttrs
	for _, prefix := range []string{table + "/", DeadLetterRoot + table + "/"} {
		err := l.b.Iter(ctx, prefix, func(a objstore.ObjectAttrs) error {
			if a.LastModified.Before(cutoff) {
				candidates = append(candidates, a)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("find orphans: list %s: %w", prefix, err)
		}
	}
	if len(candidates) == 0 {
		return nil, nil
	}
	recs, _, err := l.scan(ctx, CommitPrefix(table), nil)
	if err != nil {
		return nil, fmt.Errorf("find orphans of %s: read records: %w", table, err)
	}
	named, expired, err := l.compactionOrphanRules(ctx, table, cutoff)
	if err != nil {
		return nil, fmt.Errorf("find orphans of %s: %w", table, err)
	}
	for _, r := range recs {
		for _, o := range r.Objects {
			named[o.Key] = true
		}
	}
	var orphans []objstore.ObjectAttrs
	for _, a := range candidates {
		if !named[a.Key] || expired[a.Key] {
			orphans = append(orphans, a)
		}
	}
	return orphans, nil
}

// DeleteOrphans deletes what Orphans finds and returns how many it deleted.
func (l *CommitLog) DeleteOrphans(ctx context.Context, table string, grace time.Duration) (int, error) {
	orphans, err := l.Orphans(ctx, table, grace)
	if err != nil {
		return 0, err
	}
	for i, o := range orphans {
		if err := l.b.Delete(ctx, o.Key); err != nil {
			return i, fmt.Errorf("delete orphan: %w", err)
		}
	}
	if len(orphans) > 0 {
		l.logger.Info("deleted orphan objects", "table", table, "count", len(orphans))
	}
	return len(orphans), nil
}
