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
	// Records are the links in order (Seq 0, 1, 2, ...): a version-1 chain
	// first, if the partition was written by an older binary, then the
	// version-2 links. Each starts where the previous ends, except a reset.
	Records   []CommitRecord
	Anomalies []Anomaly
}

// End is where a partition's chain ends: the number of the next link and
// the position it must start at.
type End struct {
	Seq      int64    `json:"seq"`                 // the next link's number
	Next     Position `json:"next"`                // where the next link starts
	SourceID string   `json:"source_id,omitempty"` // the source incarnation the chain is in ("" before any genesis)
	// Genesis is false for a chain that has only version-1 links: it must be
	// opened (which writes a genesis) before a version-2 link can follow.
	Genesis bool `json:"genesis"`
	// Ended: the chain's last link is an end link; nothing may follow.
	Ended bool `json:"ended,omitempty"`
}

// End returns where the next link must start, and false for an empty chain.
func (c Chain) End() (End, bool) {
	if len(c.Records) == 0 {
		return End{}, false
	}
	last := c.Records[len(c.Records)-1]
	e := End{Seq: last.Seq + 1, Next: last.Next, Ended: last.Kind == LinkEnd}
	for i := len(c.Records) - 1; i >= 0; i-- {
		r := c.Records[i]
		if r.Version >= 2 {
			e.Genesis = true
		}
		if r.Kind == LinkGenesis || r.Kind == LinkReset {
			e.SourceID = r.SourceID
			break
		}
	}
	return e, true
}

// Gaps returns the chain's gap links: ranges that were lost before they
// could be ingested.
func (c Chain) Gaps() []CommitRecord {
	var out []CommitRecord
	for _, r := range c.Records {
		if r.Kind == LinkGap {
			out = append(out, r)
		}
	}
	return out
}

// CommitLog reads and extends the commit chains kept in a bucket. It is safe
// for concurrent use.
//
// A partition's version-2 links are keyed by their number, so one sorted
// listing of the partition's prefix yields them in order (after any
// version-1 records, keyed by first offset; links an older binary stored
// flat come before those in directories, see LinkKey). Records are immutable once
// written, so parsed records are cached by key (checked against size and
// modification time) and a read after the first costs one listing plus
// reads of new records only.
type CommitLog struct {
	b      objstore.Bucket
	logger *slog.Logger
	now    func() time.Time

	checkpointEvery int64           // links between a partition's checkpoints; 0: none
	ages            *checkpointAges // nil: not published; see WithMetrics

	mu    sync.Mutex
	cache *recordCache
	ends  map[partitionID]End         // chain ends seen by this process
	moved map[partitionID]bool        // chains known to have their move marker; see moved.go
	comps map[string]cachedCompaction // compaction records by key; see compaction.go
}

type partitionID struct{ table, source, partition string }

type cachedRecord struct {
	size    int64
	modTime time.Time
	rec     CommitRecord
	bad     string // why the object is garbage; "" for a valid record
	marker  bool   // a move marker: neither a record nor garbage
}

// NewCommitLog returns a log over b that does not log; see WithLogger.
func NewCommitLog(b objstore.Bucket) *CommitLog {
	return &CommitLog{
		b:      b,
		logger: slog.New(slog.DiscardHandler),
		now:    time.Now,
		cache:  newRecordCache(DefaultCacheBytes),
		ends:   map[partitionID]End{},
		moved:  map[partitionID]bool{},

		checkpointEvery: DefaultCheckpointEvery,
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
	for _, seg := range strings.Split(partition, "/") {
		if isPartitionDirName(seg) {
			return fmt.Errorf("%w: partition %q has a segment %q named like a directory of links or checkpoints", ErrInvalidCommit, partition, seg)
		}
	}
	return nil
}

// validateRecord checks that rec is self-consistent and its objects sit in
// the table's areas, so Orphans and readers agree on what a record names.
func validateRecord(rec CommitRecord) error {
	if err := ValidateCommitNames(rec.Table, rec.Source, rec.Partition); err != nil {
		return err
	}
	switch rec.Version {
	case 1:
		switch {
		case rec.FirstOffset < 0:
			return fmt.Errorf("%w: negative first offset %d", ErrInvalidCommit, rec.FirstOffset)
		case rec.NextOffset <= rec.FirstOffset:
			return fmt.Errorf("%w: next offset %d is not after first offset %d", ErrInvalidCommit, rec.NextOffset, rec.FirstOffset)
		}
	case CommitRecordVersion:
		if rec.Seq < 0 {
			return fmt.Errorf("%w: negative link number %d", ErrInvalidCommit, rec.Seq)
		}
		if rec.Next.Less(rec.First) {
			return fmt.Errorf("%w: next position %s is before first position %s", ErrInvalidCommit, rec.Next, rec.First)
		}
		switch rec.Kind {
		case LinkData:
			if rec.First == rec.Next {
				return fmt.Errorf("%w: data link covers no positions (%s)", ErrInvalidCommit, rec.First)
			}
		case LinkGap:
			if rec.First == rec.Next || len(rec.Objects) > 0 {
				return fmt.Errorf("%w: a gap link covers positions and names no objects", ErrInvalidCommit)
			}
		case LinkGenesis, LinkReset, LinkEnd:
			if rec.First != rec.Next || len(rec.Objects) > 0 {
				return fmt.Errorf("%w: a %s link covers no positions and names no objects", ErrInvalidCommit, rec.Kind)
			}
		default:
			return fmt.Errorf("%w: unknown link kind %q", ErrInvalidCommit, rec.Kind)
		}
	default:
		return fmt.Errorf("%w: version %d, want 1 or %d", ErrInvalidCommit, rec.Version, CommitRecordVersion)
	}
	if rec.Records < 0 || rec.DeadLetters < 0 {
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
		if rec.Version >= 2 && !strings.HasPrefix(o.Checksum, "crc32c:") {
			return fmt.Errorf("%w: object %q has no checksum", ErrInvalidCommit, o.Key)
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

// Commit writes rec as link rec.Seq of its partition's chain, with a
// conditional create under LinkKey. Version and CommittedAt are filled in
// when zero. rec must be the chain's next link (as last seen by this log;
// on first use the chain is read): at its Seq, starting at its Next. If
// another writer created the link first the error wraps ErrCommitConflict
// and objstore.ErrExists. Committing the same record again (same writer and
// content, e.g. after an ambiguous network error) succeeds without writing.
func (l *CommitLog) Commit(ctx context.Context, rec CommitRecord) error {
	if rec.Version == 0 {
		rec.Version = CommitRecordVersion
	}
	if rec.CommittedAt.IsZero() {
		rec.CommittedAt = l.now().UTC()
	}
	where := fmt.Sprintf("commit %s/%s/%s link %d [%s,%s)", rec.Table, rec.Source, rec.Partition, rec.Seq, rec.First, rec.Next)
	if rec.Version != CommitRecordVersion {
		return fmt.Errorf("%s: %w: only version %d is written", where, ErrInvalidCommit, CommitRecordVersion)
	}
	if err := validateRecord(rec); err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	pid := partitionID{rec.Table, rec.Source, rec.Partition}
	l.mu.Lock()
	end, known := l.ends[pid]
	l.mu.Unlock()
	if !known {
		var err error
		end, known, err = l.Resume(ctx, rec.Table, rec.Source, rec.Partition)
		if err != nil {
			return fmt.Errorf("%s: read chain: %w", where, err)
		}
	}
	if err := fits(rec, end, known); err != nil {
		// Maybe our own earlier attempt, whose answer was lost.
		if rec.Seq < end.Seq {
			if same, serr := l.sameRecord(ctx, RecordKey(rec), rec); serr == nil && same {
				return nil
			}
		}
		return fmt.Errorf("%s: %w: %v", where, ErrCommitConflict, err)
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("%s: encode: %w", where, err)
	}
	if err := l.fenceFlatWriters(ctx, rec); err != nil {
		l.forgetEnd(pid)
		return fmt.Errorf("%s: %w", where, err)
	}
	err = l.b.PutIfAbsent(ctx, RecordKey(rec), data)
	switch {
	case err == nil:
	case errors.Is(err, objstore.ErrExists):
		if same, serr := l.sameRecord(ctx, RecordKey(rec), rec); serr == nil && same {
			break
		}
		l.forgetEnd(pid)
		return fmt.Errorf("%s: %w: another writer created link %d first: %w", where, ErrCommitConflict, rec.Seq, err)
	default:
		// The write may or may not have landed; the next Commit re-reads.
		l.forgetEnd(pid)
		return fmt.Errorf("%s: %w", where, err)
	}
	l.mu.Lock()
	next := End{Seq: rec.Seq + 1, Next: rec.Next, SourceID: end.SourceID, Genesis: true, Ended: rec.Kind == LinkEnd}
	if rec.Kind == LinkGenesis || rec.Kind == LinkReset {
		next.SourceID = rec.SourceID
	}
	l.ends[pid] = next
	l.mu.Unlock()
	l.ages.note(pid, next.Seq, -1)
	if l.checkpointEvery > 0 && next.Seq%l.checkpointEvery == 0 {
		l.writeCheckpoint(ctx, rec.Table, rec.Source, rec.Partition, rec.Writer, next)
	}
	return nil
}

// fits says why rec cannot be the link after end, or nil if it can.
func fits(rec CommitRecord, end End, known bool) error {
	if !known {
		if rec.Seq != 0 || rec.Kind != LinkGenesis {
			return fmt.Errorf("the chain is empty: its first link must be a genesis at 0")
		}
		return nil
	}
	switch {
	case rec.Seq != end.Seq:
		return fmt.Errorf("link %d, but the chain's next link is %d", rec.Seq, end.Seq)
	case end.Ended:
		return fmt.Errorf("the chain has ended (its last link is an end link)")
	case !end.Genesis && rec.Kind != LinkGenesis:
		return fmt.Errorf("a version-1 chain continues with a genesis, not a %s link", rec.Kind)
	case rec.Kind == LinkGenesis && end.Genesis:
		return fmt.Errorf("the chain already has a genesis")
	case rec.Kind != LinkReset && rec.First != end.Next:
		return fmt.Errorf("link starts at %s but the chain ends at %s", rec.First, end.Next)
	case rec.Kind != LinkGenesis && rec.Kind != LinkReset && rec.SourceID != end.SourceID:
		return fmt.Errorf("link is of source incarnation %q, the chain of %q", rec.SourceID, end.SourceID)
	}
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

// Genesis says where a partition with no chain starts; a source resolves it
// (start_offset earliest, latest, a time) when Open asks, once per chain.
type Genesis struct {
	At       Position
	SourceID string
	Reason   string // how At was found, for operators
	Lag      int64  // positions between At and the source's end, when known
}

// Open returns where the partition's chain ends, creating its genesis link
// first if it has none: resolve is then called for the start position and
// the source's incarnation (for a chain written by an older binary, only
// the incarnation is used: the genesis continues the old chain at its end).
// Of several writers opening a new partition at once exactly one genesis is
// written; the others read and return it, so the start is resolved once
// and never again, whoever owns the partition later.
func (l *CommitLog) Open(ctx context.Context, table, source, partition, writer string, resolve func(context.Context) (Genesis, error)) (End, error) {
	for attempt := 0; ; attempt++ {
		end, found, err := l.Resume(ctx, table, source, partition)
		if err != nil {
			return End{}, err
		}
		if found && end.Genesis {
			return end, nil
		}
		if attempt > 3 {
			return End{}, fmt.Errorf("open %s/%s/%s: %w: the genesis kept changing", table, source, partition, ErrCommitConflict)
		}
		g, err := resolve(ctx)
		if err != nil {
			return End{}, fmt.Errorf("open %s/%s/%s: resolve the start: %w", table, source, partition, err)
		}
		rec := CommitRecord{Table: table, Source: source, Partition: partition, Kind: LinkGenesis,
			First: g.At, Next: g.At, SourceID: g.SourceID, Reason: g.Reason, Lag: g.Lag, Writer: writer, Objects: []CommittedObject{}}
		if found {
			rec.Seq, rec.First, rec.Next = end.Seq, end.Next, end.Next
			rec.Reason = fmt.Sprintf("continues a version-1 chain of %d links", end.Seq)
		}
		err = l.Commit(ctx, rec)
		if err == nil {
			return End{Seq: rec.Seq + 1, Next: rec.Next, SourceID: rec.SourceID, Genesis: true}, nil
		}
		if !errors.Is(err, ErrCommitConflict) {
			return End{}, err
		}
		// Another writer's genesis won: read it.
	}
}

// Resume returns where the partition's chain ends, and found=false if it
// has no links. From the newest checkpoint it reads only the links after
// it (see checkpoint.go); without one, the whole chain. Anomalies are
// logged and skipped; Chain returns them.
func (l *CommitLog) Resume(ctx context.Context, table, source, partition string) (end End, found bool, err error) {
	if err := ValidateCommitNames(table, source, partition); err != nil {
		return End{}, false, fmt.Errorf("resume: %w", err)
	}
	end, ok, err := l.tail(ctx, table, source, partition)
	if err != nil {
		return End{}, false, err
	}
	if ok {
		l.mu.Lock()
		l.ends[partitionID{table, source, partition}] = end
		l.mu.Unlock()
		return end, true, nil
	}
	chain, err := l.Chain(ctx, table, source, partition)
	if err != nil {
		return End{}, false, err
	}
	end, found = chain.End()
	if found {
		l.ages.note(partitionID{table, source, partition}, end.Seq, 0) // no usable checkpoint: the whole chain was read
	}
	return end, found, nil
}

// Chain reads the chain of one partition, listing only its prefix.
func (l *CommitLog) Chain(ctx context.Context, table, source, partition string) (Chain, error) {
	if err := ValidateCommitNames(table, source, partition); err != nil {
		return Chain{}, fmt.Errorf("read chain: %w", err)
	}
	prefix := PartitionCommitPrefix(table, source, partition)
	moved := false
	entries, anomalies, err := l.scan(ctx, prefix, func(key string) bool {
		// A partition containing "/" nests under a shorter one's prefix.
		_, bucketed, ok := partitionEntry(prefix, key)
		moved = moved || bucketed
		return ok
	})
	if err != nil {
		return Chain{}, fmt.Errorf("read chain %s: %w", prefix, err)
	}
	recs, off := buildChain(entries)
	chain := Chain{Table: table, Source: source, Partition: partition, Records: recs, Anomalies: append(anomalies, off...)}
	l.report(prefix, chain.Anomalies)
	pid := partitionID{table, source, partition}
	if moved {
		l.markMoved(pid) // a bucketed link is only written after the marker
	}
	l.mu.Lock()
	if end, ok := chain.End(); ok {
		l.ends[pid] = end
	} else {
		delete(l.ends, pid)
	}
	l.mu.Unlock()
	return chain, nil
}

// Records returns every link on the chains of a table, ordered by
// (source, partition, seq). Off-chain records and garbage are left out
// (and logged); Chains returns them.
func (l *CommitLog) Records(ctx context.Context, table string) ([]CommitRecord, error) {
	chains, err := l.Chains(ctx, table)
	if err != nil {
		return nil, err
	}
	return ChainRecords(chains), nil
}

// ChainRecords lists the commit records of chains, chain after chain.
func ChainRecords(chains []Chain) []CommitRecord {
	var out []CommitRecord
	for _, c := range chains {
		out = append(out, c.Records...)
	}
	return out
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

// buildChain orders one partition's valid records into its chain and
// returns the records left off it.
//
// Version-1 records are walked from the lowest first offset: each must start
// where the previous ends; one that overlaps a link (a writer that lost
// ownership) is left off, and so is everything after a gap (nothing may
// follow a missing link, or the chain would skip offsets). They are
// numbered 0, 1, ... in chain order.
//
// Version-2 links follow by number. The first must be the genesis at the
// number after the version-1 chain (a version-1 record past the genesis'
// start was written by an older binary after the upgrade and is left off);
// each next link must be numbered one more and start where the previous
// ends (a reset may start anywhere). A missing number ends the chain.
func buildChain(recs []CommitRecord) (chain []CommitRecord, off []Anomaly) {
	var v1, v2 []CommitRecord
	for _, r := range recs {
		if r.Version == 1 {
			v1 = append(v1, r)
		} else {
			v2 = append(v2, r)
		}
	}
	slices.SortFunc(v1, func(a, b CommitRecord) int { return cmp.Compare(a.FirstOffset, b.FirstOffset) })
	slices.SortFunc(v2, func(a, b CommitRecord) int { return cmp.Compare(a.Seq, b.Seq) })
	for i, r := range v1 {
		if len(chain) == 0 {
			chain = append(chain, r)
			continue
		}
		end := chain[len(chain)-1].NextOffset
		switch {
		case r.FirstOffset == end:
			chain = append(chain, r)
		case r.FirstOffset < end:
			off = append(off, Anomaly{Key: RecordKey(r),
				Reason: fmt.Sprintf("overlaps the chain: starts at %d, inside a link ending at %d", r.FirstOffset, end)})
		default:
			for _, g := range v1[i:] {
				off = append(off, Anomaly{Key: RecordKey(g),
					Reason: fmt.Sprintf("beyond a gap: the chain ends at %d, the next record starts at %d", end, r.FirstOffset)})
			}
			v1 = nil
		}
		if v1 == nil {
			break
		}
	}
	for i := range chain {
		chain[i].Seq = int64(i)
		chain[i].Kind = LinkData
		chain[i].First, chain[i].Next = PositionOf(chain[i].FirstOffset), PositionOf(chain[i].NextOffset)
	}
	if len(v2) > 0 && v2[0].Kind == LinkGenesis && v2[0].Seq < int64(len(chain)) {
		// An older binary extended the version-1 chain after the genesis.
		for _, r := range chain[v2[0].Seq:] {
			off = append(off, Anomaly{Key: RecordKey(r), Reason: fmt.Sprintf("version-1 record after the chain's genesis at link %d", v2[0].Seq)})
		}
		chain = chain[:v2[0].Seq]
	}
	for i, r := range v2 {
		var why string
		switch {
		case len(chain) > 0 && chain[len(chain)-1].Seq == r.Seq:
			// Stored flat and in its bucket: an older binary wrote it
			// past the move marker (deleted by hand?). Which copy the
			// chain goes on with is not for a reader to guess.
			why = fmt.Sprintf("link %d is stored twice, flat and in its bucket: the chain forked; neither copy is read", r.Seq)
			chain = chain[:len(chain)-1]
			i--
		case r.Seq != int64(len(chain)):
			why = fmt.Sprintf("beyond a missing link: the chain ends at link %d, this is link %d", len(chain), r.Seq)
		case r.Kind == LinkGenesis && (i > 0):
			why = "a second genesis"
		case len(chain) > 0 && chain[len(chain)-1].Kind == LinkEnd:
			why = fmt.Sprintf("after the chain's end link %d", chain[len(chain)-1].Seq)
		case i == 0 && r.Kind != LinkGenesis:
			why = fmt.Sprintf("the first version-2 link is a %s, not a genesis", r.Kind)
		case i == 0 && len(chain) > 0 && r.First != chain[len(chain)-1].Next:
			why = fmt.Sprintf("genesis at %s does not continue the version-1 chain ending at %s", r.First, chain[len(chain)-1].Next)
		case i > 0 && r.Kind != LinkReset && r.First != chain[len(chain)-1].Next:
			why = fmt.Sprintf("starts at %s but the chain ends at %s", r.First, chain[len(chain)-1].Next)
		}
		if why != "" {
			for _, g := range v2[i:] {
				off = append(off, Anomaly{Key: RecordKey(g), Reason: why})
			}
			break
		}
		chain = append(chain, r)
	}
	return chain, off
}

// scan lists prefix and returns the valid records in key order plus the
// garbage found. Records are read in parallel and cached.
func (l *CommitLog) scan(ctx context.Context, prefix string, keep func(key string) bool) ([]CommitRecord, []Anomaly, error) {
	var listed []objstore.ObjectAttrs
	err := l.b.Iter(ctx, prefix, func(a objstore.ObjectAttrs) error {
		if isCheckpointKey(a.Key) {
			return nil // not a link: see checkpoint.go
		}
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
		c, ok := l.cache.get(a.Key)
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
				l.cache.put(a.Key, c)
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
		case !present[i] || c.marker:
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
	if isFlatKey(a.Key) && isMovedMarker(a.Key, data) {
		c.marker = true
		return c, true, nil
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
	digits, ok := strings.CutSuffix(strings.TrimPrefix(name, linkPrefix), ".json")
	if !ok || len(digits) != 20 {
		return rec, "not a commit record name"
	}
	if _, err := strconv.ParseUint(digits, 10, 64); err != nil {
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
	if want := RecordKey(rec); want != key {
		if rec.Version < CommitRecordVersion || flatLinkKey(rec.Table, rec.Source, rec.Partition, rec.Seq) != key {
			return rec, fmt.Sprintf("content belongs at %s", want)
		}
		rec.flat = true // written before link buckets
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

// PinSourceStart stores st as the source's start unless one is stored, and
// returns the stored one: of several processes, the first wins and all
// agree.
func (l *CommitLog) PinSourceStart(ctx context.Context, table, source string, st SourceStart) (SourceStart, error) {
	if err := ValidateCommitNames(table, source, "p"); err != nil {
		return SourceStart{}, fmt.Errorf("pin source start: %w", err)
	}
	key := SourceStartKey(table, source)
	data, err := json.Marshal(st)
	if err != nil {
		return SourceStart{}, err
	}
	err = l.b.PutIfAbsent(ctx, key, data)
	if err == nil {
		return st, nil
	}
	if !errors.Is(err, objstore.ErrExists) {
		return SourceStart{}, fmt.Errorf("pin source start %s: %w", key, err)
	}
	rc, err := l.b.Get(ctx, key)
	if err != nil {
		return SourceStart{}, fmt.Errorf("read source start %s: %w", key, err)
	}
	defer rc.Close()
	var got SourceStart
	if err := json.NewDecoder(io.LimitReader(rc, maxRecordSize)).Decode(&got); err != nil {
		return SourceStart{}, fmt.Errorf("read source start %s: %w", key, err)
	}
	return got, nil
}
