package lake

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/objstore"
)

// Compaction replaces several committed raw objects of one event-time hour
// by fewer, larger ones without rewriting any commit record: a compaction
// record says "objects [a, b, c] are now [d]". Readers take the objects the
// commit chains name and apply the compaction records on top (LiveObjects).
//
// The records of one (table, hour) form a sequence, each under a
// zero-padded sequence number and written with a conditional create, like
// the links of a commit chain. A compactor reads the sequence, checks that
// every object it replaces is live after the last record, and writes the
// next number; two compactors racing for the same number cannot both win,
// and the loser re-reads and finds its inputs gone (or, for disjoint
// inputs, simply takes the following number). So records apply in one
// order that never changes once a reader has seen it: a record that is
// visible stays applied, and a replaced object can be deleted after a grace
// period without a later-appearing record resurrecting it.
//
// (A record keyed by a hash of its inputs, as first sketched, lets two
// compactors with overlapping inputs both write; any precedence readers
// then derive from the keys can flip when the second record appears late,
// after the first record's replaced objects were deleted.)

// CompactionsRoot is the prefix of all compaction records.
const CompactionsRoot = "_sluice/compactions/"

// CompactionRecordVersion is the CompactionRecord.Version this binary
// writes. Version 2 adds object checksums; version 1 records are still read.
const CompactionRecordVersion = 2

// ErrCompactionConflict is wrapped by CommitCompaction's error when an
// object to replace is no longer live (another compactor replaced it first)
// or the sequence stayed contended. Nothing was committed; the new objects
// are orphans for the sweeper.
var ErrCompactionConflict = errors.New("compaction conflict")

// ReplacedObject is one object a compaction record takes out of the live set.
type ReplacedObject struct {
	Key  string `json:"key"`
	Rows int64  `json:"rows"`
	Size int64  `json:"size"` // bytes
}

// CompactionRecord says that the raw objects Replaced, all of one event-time
// hour, hold exactly the rows of Objects, and that readers must read the
// latter instead. It is written after Objects are durable.
type CompactionRecord struct {
	Version int       `json:"version"`
	Table   string    `json:"table"`
	Hour    time.Time `json:"hour"` // start of the event-time hour, UTC
	Seq     int64     `json:"seq"`  // position in the hour's sequence; set by CommitCompaction
	// ID is CompactionID of the replaced keys; it names the new objects, so
	// a compactor that retries the same inputs overwrites its own leftovers.
	ID       string            `json:"id"`
	Replaced []ReplacedObject  `json:"replaced"` // sorted by key
	Objects  []CommittedObject `json:"objects"`  // kind raw, under the same hour
	Rows     int64             `json:"rows"`
	Writer   string            `json:"writer"`
	// CommittedAt is the writer's clock; the grace period before replaced
	// objects are deleted is measured from the record's store time instead.
	CommittedAt time.Time `json:"committed_at"`
}

// LiveObject is an object readers must read: named by a commit record on a
// chain and not replaced, or created by an applied compaction record.
type LiveObject struct {
	CommittedObject
	// Source and Partition of the rows; "" when a compacted object holds
	// rows of several (a partition is only named with its source).
	Source, Partition string
	// CommittedAt is when the commit or compaction record was written.
	CommittedAt time.Time
	// Compaction is the key of the record that created the object, "" for
	// an object written by ingest.
	Compaction string
}

// CompactionPrefix is where the compaction records of a table live.
func CompactionPrefix(table string) string { return CompactionsRoot + table + "/" }

func hourSegments(hour time.Time) string {
	hour = hour.UTC()
	return fmt.Sprintf("dt=%s/hour=%02d/", hour.Format(time.DateOnly), hour.Hour())
}

// RawHourPrefix is where the raw objects of one event-time hour live.
func RawHourPrefix(table string, hour time.Time) string { return table + "/" + hourSegments(hour) }

// CompactionHourPrefix is where the sequence of one hour's records lives.
func CompactionHourPrefix(table string, hour time.Time) string {
	return CompactionPrefix(table) + hourSegments(hour)
}

// CompactionKey is the key of record seq of the hour's sequence;
// zero-padding keeps lexical order equal to (hour, seq) order.
func CompactionKey(table string, hour time.Time, seq int64) string {
	return fmt.Sprintf("%s%010d.json", CompactionHourPrefix(table, hour), seq)
}

// CompactionID names a set of replaced keys: the same set, in any order,
// gives the same ID.
func CompactionID(keys []string) string {
	sorted := slices.Clone(keys)
	slices.Sort(sorted)
	h := sha256.New()
	for _, k := range sorted {
		h.Write([]byte(k))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// CompactedObjectKey is the key of the n-th object a compaction attempt
// writes. attempt is unique per attempt (a random nonce): two compactors,
// or one retrying, never write the same key, so a committed object is never
// overwritten by a later attempt that split its rows differently.
func CompactedObjectKey(table string, hour time.Time, id, attempt string, n int) string {
	return fmt.Sprintf("%scompacted-%s-%s-%d.parquet", RawHourPrefix(table, hour), id, attempt, n)
}

func validateCompaction(rec CompactionRecord) error {
	if err := ValidateCommitNames(rec.Table, "s", "p"); err != nil {
		return err
	}
	switch {
	case rec.Version != 1 && rec.Version != CompactionRecordVersion:
		return fmt.Errorf("%w: version %d, want 1 or %d", ErrInvalidCommit, rec.Version, CompactionRecordVersion)
	case rec.Seq < 0:
		return fmt.Errorf("%w: negative sequence number %d", ErrInvalidCommit, rec.Seq)
	case rec.Hour.IsZero() || !rec.Hour.Equal(rec.Hour.Truncate(time.Hour)):
		return fmt.Errorf("%w: hour %s is not the start of an hour", ErrInvalidCommit, rec.Hour)
	case len(rec.Replaced) == 0:
		return fmt.Errorf("%w: replaces nothing", ErrInvalidCommit)
	case len(rec.Objects) == 0:
		return fmt.Errorf("%w: no new objects", ErrInvalidCommit)
	}
	prefix := RawHourPrefix(rec.Table, rec.Hour)
	lo, hi := rec.Hour.UnixMicro(), rec.Hour.Add(time.Hour).UnixMicro()-1
	var in, out int64
	seen := map[string]bool{}
	keys := make([]string, len(rec.Replaced))
	for i, r := range rec.Replaced {
		if err := objstore.ValidateKey(r.Key); err != nil {
			return fmt.Errorf("%w: replaced object: %v", ErrInvalidCommit, err)
		}
		if !strings.HasPrefix(r.Key, prefix) {
			return fmt.Errorf("%w: replaced object %q is not under %q", ErrInvalidCommit, r.Key, prefix)
		}
		if i > 0 && r.Key <= rec.Replaced[i-1].Key {
			return fmt.Errorf("%w: replaced objects are not sorted and distinct at %q", ErrInvalidCommit, r.Key)
		}
		if r.Rows < 0 || r.Size < 0 {
			return fmt.Errorf("%w: replaced object %q has negative rows or size", ErrInvalidCommit, r.Key)
		}
		seen[r.Key] = true
		keys[i] = r.Key
		in += r.Rows
	}
	if id := CompactionID(keys); rec.ID != id {
		return fmt.Errorf("%w: id %q, the replaced keys give %q", ErrInvalidCommit, rec.ID, id)
	}
	for _, o := range rec.Objects {
		if err := objstore.ValidateKey(o.Key); err != nil {
			return fmt.Errorf("%w: object: %v", ErrInvalidCommit, err)
		}
		switch {
		case o.Kind != KindRaw:
			return fmt.Errorf("%w: object %q has kind %q, want %q", ErrInvalidCommit, o.Key, o.Kind, KindRaw)
		case !strings.HasPrefix(o.Key, prefix):
			return fmt.Errorf("%w: object %q is not under %q", ErrInvalidCommit, o.Key, prefix)
		case seen[o.Key]:
			return fmt.Errorf("%w: object %q is named twice or replaces itself", ErrInvalidCommit, o.Key)
		case o.Rows < 0 || o.Size < 0:
			return fmt.Errorf("%w: object %q has negative rows or size", ErrInvalidCommit, o.Key)
		case rec.Version >= 2 && !strings.HasPrefix(o.Checksum, "crc32c:"):
			return fmt.Errorf("%w: object %q has no checksum", ErrInvalidCommit, o.Key)
		case o.Rows > 0 && (o.MinEventTimeMicros < lo || o.MaxEventTimeMicros > hi || o.MinEventTimeMicros > o.MaxEventTimeMicros):
			return fmt.Errorf("%w: object %q has event times [%d, %d] outside its hour", ErrInvalidCommit, o.Key, o.MinEventTimeMicros, o.MaxEventTimeMicros)
		}
		seen[o.Key] = true
		out += o.Rows
	}
	if in != out || out != rec.Rows {
		return fmt.Errorf("%w: replaced objects hold %d rows, new ones %d, record says %d", ErrInvalidCommit, in, out, rec.Rows)
	}
	return nil
}

// parseCompaction decodes a compaction object and checks it belongs at key;
// the second result says why not.
func parseCompaction(key string, data []byte) (CompactionRecord, string) {
	var rec CompactionRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		return rec, "undecodable: " + err.Error()
	}
	if rec.Version > CompactionRecordVersion {
		return rec, fmt.Sprintf("version %d is newer than this binary understands (%d)", rec.Version, CompactionRecordVersion)
	}
	if err := validateCompaction(rec); err != nil {
		return rec, err.Error()
	}
	if want := CompactionKey(rec.Table, rec.Hour, rec.Seq); want != key {
		return rec, fmt.Sprintf("content belongs at %s", want)
	}
	return rec, ""
}

type cachedCompaction struct {
	size    int64
	modTime time.Time
	rec     CompactionRecord
	bad     string
}

// storedCompaction is a valid record with the store's time of writing it.
type storedCompaction struct {
	key     string
	modTime time.Time
	rec     CompactionRecord
}

// compactions lists and parses a table's compaction records in key order,
// i.e. by (hour, seq). next maps each hour prefix to the first free
// sequence number (past garbage too, which still occupies its number).
func (l *CommitLog) compactions(ctx context.Context, table string) (recs []storedCompaction, garbage []Anomaly, next map[string]int64, err error) {
	var listed []objstore.ObjectAttrs
	if err := l.b.Iter(ctx, CompactionPrefix(table), func(a objstore.ObjectAttrs) error {
		listed = append(listed, a)
		return nil
	}); err != nil {
		return nil, nil, nil, fmt.Errorf("list compaction records of %s: %w", table, err)
	}
	next = map[string]int64{}
	for _, a := range listed {
		dir, name := a.Key[:strings.LastIndex(a.Key, "/")+1], a.Key[strings.LastIndex(a.Key, "/")+1:]
		if seq, err := strconv.ParseInt(strings.TrimSuffix(name, ".json"), 10, 64); err == nil && seq >= next[dir] {
			next[dir] = seq + 1
		}
		l.mu.Lock()
		if l.comps == nil {
			l.comps = map[string]cachedCompaction{}
		}
		c, ok := l.comps[a.Key]
		l.mu.Unlock()
		if !ok || c.size != a.Size || !c.modTime.Equal(a.LastModified) {
			var found bool
			c, found, err = l.loadCompaction(ctx, a)
			if err != nil {
				return nil, nil, nil, err
			}
			if !found {
				continue
			}
			l.mu.Lock()
			l.comps[a.Key] = c
			l.mu.Unlock()
		}
		if c.bad != "" {
			garbage = append(garbage, Anomaly{Key: a.Key, Reason: c.bad})
			continue
		}
		recs = append(recs, storedCompaction{key: a.Key, modTime: a.LastModified, rec: c.rec})
	}
	return recs, garbage, next, nil
}

func (l *CommitLog) loadCompaction(ctx context.Context, a objstore.ObjectAttrs) (cachedCompaction, bool, error) {
	c := cachedCompaction{size: a.Size, modTime: a.LastModified}
	if a.Size > maxRecordSize {
		c.bad = fmt.Sprintf("%d bytes, too large for a compaction record", a.Size)
		return c, true, nil
	}
	rc, err := l.b.Get(ctx, a.Key)
	if errors.Is(err, objstore.ErrNotExist) {
		return c, false, nil
	}
	if err != nil {
		return c, false, fmt.Errorf("read compaction record %s: %w", a.Key, err)
	}
	data, err := io.ReadAll(io.LimitReader(rc, maxRecordSize+1))
	rc.Close()
	if err != nil {
		return c, false, fmt.Errorf("read compaction record %s: %w", a.Key, err)
	}
	c.rec, c.bad = parseCompaction(a.Key, data)
	if c.bad != "" && c.rec.Version > CompactionRecordVersion {
		// Skipping it would show readers the replaced objects, which may
		// already be deleted.
		return c, false, fmt.Errorf("compaction record %s: %s", a.Key, c.bad)
	}
	return c, true, nil
}

// liveView is a table's live objects with the compaction records applied.
type liveView struct {
	raw       map[string]LiveObject
	dead      []LiveObject
	applied   []storedCompaction
	skipped   []storedCompaction // valid records that could not apply
	anomalies []Anomaly
	next      map[string]int64 // first free sequence number per hour prefix
	retention retentionState
	chains    []Chain // the chains the view was built from
}

// view builds the reader view. Compaction records are read before the
// chains: every object a record replaces was committed before the record was
// written, so the chains read afterwards name it, and a record is never
// skipped for want of an object committed while the view was built.
func (l *CommitLog) view(ctx context.Context, table string) (*liveView, error) {
	if err := ValidateCommitNames(table, "s", "p"); err != nil {
		return nil, fmt.Errorf("read live objects: %w", err)
	}
	comps, garbage, next, err := l.compactions(ctx, table)
	if err != nil {
		return nil, fmt.Errorf("read live objects of %s: %w", table, err)
	}
	chains, err := l.Chains(ctx, table)
	if err != nil {
		return nil, fmt.Errorf("read live objects of %s: %w", table, err)
	}
	v := &liveView{raw: map[string]LiveObject{}, anomalies: garbage, next: next, chains: chains}
	for _, c := range chains {
		for _, r := range c.Records {
			for _, o := range r.Objects {
				lo := LiveObject{CommittedObject: o, Source: r.Source, Partition: r.Partition, CommittedAt: r.CommittedAt}
				if o.Kind == KindDeadLetter {
					v.dead = append(v.dead, lo)
					continue
				}
				v.raw[o.Key] = lo
			}
		}
	}
	for _, sc := range comps {
		if why := v.applicable(sc.rec); why != "" {
			v.skipped = append(v.skipped, sc)
			v.anomalies = append(v.anomalies, Anomaly{Key: sc.key, Reason: why})
			continue
		}
		v.apply(sc)
	}
	// Retention last: the hours it retired leave the view whole (retention.go).
	ret, err := l.retention(ctx, table)
	if err != nil {
		return nil, fmt.Errorf("read live objects of %s: %w", table, err)
	}
	v.retention = ret
	v.anomalies = append(v.anomalies, ret.garbage...)
	v.retire(ret.horizon(time.Time{}).RawBefore)
	if len(v.anomalies) > 0 {
		l.report(CompactionPrefix(table), v.anomalies)
	}
	return v, nil
}

// applicable says why rec cannot apply to the view, or "".
func (v *liveView) applicable(rec CompactionRecord) string {
	for _, r := range rec.Replaced {
		o, ok := v.raw[r.Key]
		if !ok {
			return fmt.Sprintf("replaces %s, which is not live", r.Key)
		}
		if o.Rows != r.Rows || o.Size != r.Size {
			return fmt.Sprintf("replaces %s as %d rows / %d bytes, but it is live as %d / %d", r.Key, r.Rows, r.Size, o.Rows, o.Size)
		}
	}
	for _, o := range rec.Objects {
		if _, ok := v.raw[o.Key]; ok {
			return fmt.Sprintf("creates %s, which is already live", o.Key)
		}
	}
	return ""
}

func (v *liveView) apply(sc storedCompaction) {
	first := v.raw[sc.rec.Replaced[0].Key]
	source, partition := first.Source, first.Partition
	for _, r := range sc.rec.Replaced {
		o := v.raw[r.Key]
		if o.Source != source {
			source, partition = "", ""
		}
		if o.Partition != partition {
			partition = ""
		}
		delete(v.raw, r.Key)
	}
	for _, o := range sc.rec.Objects {
		v.raw[o.Key] = LiveObject{CommittedObject: o, Source: source, Partition: partition,
			CommittedAt: sc.rec.CommittedAt, Compaction: sc.key}
	}
	v.applied = append(v.applied, sc)
}

// LiveObjects returns the table's live raw objects, sorted by key: every raw
// object named by a commit record on the chains, with the compaction records
// applied in order (replaced objects removed, their replacements added), and
// without the hours a retention record retired (retention.go). A
// compaction record applies only if everything it replaces is live; one that
// does not is reported and ignored. This is the view every reader (the
// aggregator, inspect, the verifier) must use: each committed row is in
// exactly one live object.
//
// Replaced and retired objects are deleted a grace period after their
// record (see Sweeper): a reader must finish reading the objects of one
// call within it.
func (l *CommitLog) LiveObjects(ctx context.Context, table string) ([]LiveObject, error) {
	v, err := l.view(ctx, table)
	if err != nil {
		return nil, err
	}
	return v.liveObjects(), nil
}

// liveObjects lists the view's live raw objects, sorted by key.
func (v *liveView) liveObjects() []LiveObject {
	out := make([]LiveObject, 0, len(v.raw))
	for _, o := range v.raw {
		out = append(out, o)
	}
	slices.SortFunc(out, func(a, b LiveObject) int { return strings.Compare(a.Key, b.Key) })
	return out
}

// LiveSnapshot returns the chains of a table and its live raw objects as
// one view: every live object is named by those chains or made by a
// compaction of objects they name. Chains and LiveObjects read one after
// the other can disagree (a commit in between): the aggregator records
// which links a summary holds, and a summary built from objects its links
// do not name would count their rows again when they arrive as new links.
func (l *CommitLog) LiveSnapshot(ctx context.Context, table string) ([]Chain, []LiveObject, error) {
	v, err := l.view(ctx, table)
	if err != nil {
		return nil, nil, err
	}
	return v.chains, v.liveObjects(), nil
}

// LiveDeadLetters returns the dead-letter objects named by the commit
// records on the chains, in (source, partition, offset) order. Compaction
// never touches them.
func (l *CommitLog) LiveDeadLetters(ctx context.Context, table string) ([]LiveObject, error) {
	v, err := l.view(ctx, table)
	if err != nil {
		return nil, err
	}
	return v.dead, nil
}

// Compactions returns the table's compaction records that apply, in the
// order they apply, and the anomalies (garbage and records that do not
// apply), for inspect and tests.
func (l *CommitLog) Compactions(ctx context.Context, table string) ([]CompactionRecord, []Anomaly, error) {
	v, err := l.view(ctx, table)
	if err != nil {
		return nil, nil, err
	}
	out := make([]CompactionRecord, len(v.applied))
	for i, sc := range v.applied {
		out[i] = sc.rec
	}
	return out, v.anomalies, nil
}

// maxCompactionAttempts bounds how often CommitCompaction re-reads the
// sequence after losing a sequence number to another compactor.
const maxCompactionAttempts = 8

// CommitCompaction writes rec as the next record of its hour's sequence,
// after checking against the current view that every object it replaces is
// live, with the rows and size rec says. Seq is chosen here; Version, ID,
// Rows and CommittedAt are filled in when zero, and Replaced is sorted. The
// new objects must already be durable.
//
// If an object to replace is no longer live the error wraps
// ErrCompactionConflict, unless rec itself is already applied (an earlier
// attempt whose answer was lost), which is success. Losing a sequence
// number to a compactor with other inputs is retried.
func (l *CommitLog) CommitCompaction(ctx context.Context, rec CompactionRecord) (CompactionRecord, error) {
	if rec.Version == 0 {
		rec.Version = CompactionRecordVersion
	}
	if rec.CommittedAt.IsZero() {
		rec.CommittedAt = l.now().UTC()
	}
	rec.Hour = rec.Hour.UTC()
	rec.Replaced = slices.Clone(rec.Replaced)
	slices.SortFunc(rec.Replaced, func(a, b ReplacedObject) int { return strings.Compare(a.Key, b.Key) })
	keys := make([]string, len(rec.Replaced))
	for i, r := range rec.Replaced {
		keys[i] = r.Key
	}
	if rec.ID == "" {
		rec.ID = CompactionID(keys)
	}
	if rec.Rows == 0 {
		for _, o := range rec.Objects {
			rec.Rows += o.Rows
		}
	}
	what := fmt.Sprintf("commit compaction %s of %s hour %s", rec.ID, rec.Table, rec.Hour.Format(time.RFC3339))
	if err := validateCompaction(rec); err != nil {
		return rec, fmt.Errorf("%s: %w", what, err)
	}
	hourDir := CompactionHourPrefix(rec.Table, rec.Hour)
	for range maxCompactionAttempts {
		// The hour's own view first (compaction_hour.go): it costs the same
		// whatever the table's history. It decides only when clean and the
		// record applies; otherwise the whole table is read, as before.
		v, clean, err := l.hourView(ctx, rec.Table, rec.Hour)
		if err != nil && !errors.Is(err, objstore.ErrUnsupported) {
			return rec, fmt.Errorf("%s: %w", what, err)
		}
		if err != nil || !clean || v.applicable(rec) != "" {
			if v, err = l.view(ctx, rec.Table); err != nil {
				return rec, fmt.Errorf("%s: %w", what, err)
			}
		}
		if why := v.applicable(rec); why != "" {
			for _, sc := range v.applied {
				if sc.rec.ID == rec.ID && sameObjects(sc.rec.Objects, rec.Objects) {
					return sc.rec, nil
				}
			}
			return rec, fmt.Errorf("%s: %w: %s", what, ErrCompactionConflict, why)
		}
		rec.Seq = v.next[hourDir]
		data, err := json.Marshal(rec)
		if err != nil {
			return rec, fmt.Errorf("%s: encode: %w", what, err)
		}
		key := CompactionKey(rec.Table, rec.Hour, rec.Seq)
		switch err := l.b.PutIfAbsent(ctx, key, data); {
		case err == nil:
			return rec, nil
		case errors.Is(err, objstore.ErrExists):
			continue // another compactor took the number; re-read and re-check
		default:
			// It may have landed: a retry finds it applied.
			return rec, fmt.Errorf("%s: write %s: %w", what, key, err)
		}
	}
	return rec, fmt.Errorf("%s: %w: lost the sequence number %d times in a row", what, ErrCompactionConflict, maxCompactionAttempts)
}

func sameObjects(a, b []CommittedObject) bool {
	return slices.EqualFunc(a, b, func(x, y CommittedObject) bool { return x == y })
}

// compactionOrphanRules tells Orphans which keys compaction records keep
// (their new objects, applied or not: like off-chain commit records, they
// keep their objects so cleanup never races a repair) and which replaced
// objects may go: those whose replacing record was stored before cutoff.
func (l *CommitLog) compactionOrphanRules(ctx context.Context, table string, cutoff time.Time) (keep, expired map[string]bool, err error) {
	v, err := l.view(ctx, table)
	if err != nil {
		return nil, nil, err
	}
	keep, expired = map[string]bool{}, map[string]bool{}
	for _, list := range [][]storedCompaction{v.applied, v.skipped} {
		for _, sc := range list {
			for _, o := range sc.rec.Objects {
				keep[o.Key] = true
			}
		}
	}
	for _, sc := range v.applied {
		if sc.modTime.Before(cutoff) {
			for _, r := range sc.rec.Replaced {
				expired[r.Key] = true
			}
		}
	}
	return keep, expired, nil
}
