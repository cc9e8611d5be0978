package lake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/objstore"
)

// Retention is applied through records, like compaction: a retention record
// says "the hours before RawBefore are retired" (and, for summaries, "the
// windows before SummariesBefore"). Readers apply the newest record at
// once: every raw and dead-letter object of a retired hour leaves the live
// view in the same instant, so a reader never sees half of an hour. Only a
// grace period after the record is stored does the sweeper delete the
// objects, so a reader that listed the live objects just before the record
// finishes its reads. Commit and compaction records are kept (chains must
// stay whole for resuming); only the objects go.
//
// Records form a sequence under RetentionPrefix, each created conditionally
// at the next number. Horizons only move forward: a reader takes the
// largest horizon of any valid record, so a late or stale record can never
// bring retired hours back.

// RetentionRoot is the prefix of all retention records.
const RetentionRoot = "_sluice/retention/"

// RetentionRecordVersion is the version this binary writes and reads.
const RetentionRecordVersion = 1

// RetentionPrefix is where the retention records of a table live.
func RetentionPrefix(table string) string { return RetentionRoot + table + "/" }

// RetentionKey is the key of record seq of a table's sequence.
func RetentionKey(table string, seq int64) string {
	return fmt.Sprintf("%s%010d.json", RetentionPrefix(table), seq)
}

// RetentionRecord retires a table's data by event time.
type RetentionRecord struct {
	Version int    `json:"version"`
	Table   string `json:"table"`
	Seq     int64  `json:"seq"`
	// RawBefore retires every raw and dead-letter object whose hour (the
	// dt=/hour= of its key) starts before it. Zero retires nothing.
	RawBefore time.Time `json:"raw_before,omitzero"`
	// SummariesBefore retires every summary object whose unit starts before
	// it; the aggregator computes no window before it again.
	SummariesBefore time.Time `json:"summaries_before,omitzero"`
	Writer          string    `json:"writer"`
	CommittedAt     time.Time `json:"committed_at"`
}

// Horizon is what a table's retention records say: the newest horizons,
// and how far retirement may already be acted on (records stored before a
// cutoff).
type Horizon struct {
	RawBefore       time.Time
	SummariesBefore time.Time
}

// Before is the later of the two horizons: no window before it is computed.
func (h Horizon) Before() time.Time {
	if h.SummariesBefore.After(h.RawBefore) {
		return h.SummariesBefore
	}
	return h.RawBefore
}

func (h *Horizon) raise(r RetentionRecord) {
	if r.RawBefore.After(h.RawBefore) {
		h.RawBefore = r.RawBefore
	}
	if r.SummariesBefore.After(h.SummariesBefore) {
		h.SummariesBefore = r.SummariesBefore
	}
}

type storedRetention struct {
	key     string
	modTime time.Time
	rec     RetentionRecord
}

// retentionState is a table's retention records read from the store.
type retentionState struct {
	recs    []storedRetention // valid records in key order
	garbage []Anomaly
	next    int64 // first free sequence number
}

// horizon is the newest horizon of the records stored before cutoff (zero
// cutoff: of all records).
func (s retentionState) horizon(cutoff time.Time) Horizon {
	var h Horizon
	for _, r := range s.recs {
		if cutoff.IsZero() || r.modTime.Before(cutoff) {
			h.raise(r.rec)
		}
	}
	return h
}

func (l *CommitLog) retention(ctx context.Context, table string) (retentionState, error) {
	var st retentionState
	var listed []objstore.ObjectAttrs
	if err := l.b.Iter(ctx, RetentionPrefix(table), func(a objstore.ObjectAttrs) error {
		listed = append(listed, a)
		return nil
	}); err != nil {
		return st, fmt.Errorf("list retention records of %s: %w", table, err)
	}
	for _, a := range listed {
		name := strings.TrimPrefix(a.Key, RetentionPrefix(table))
		if seq, err := strconv.ParseInt(strings.TrimSuffix(name, ".json"), 10, 64); err == nil && seq >= st.next {
			st.next = seq + 1
		}
		if a.Size > maxRecordSize {
			st.garbage = append(st.garbage, Anomaly{Key: a.Key, Reason: "too large for a retention record"})
			continue
		}
		rc, err := l.b.Get(ctx, a.Key)
		if objstore.IsNotExist(err) {
			continue // pruned since the listing
		}
		if err != nil {
			return st, fmt.Errorf("read retention record %s: %w", a.Key, err)
		}
		data, err := io.ReadAll(io.LimitReader(rc, maxRecordSize))
		rc.Close()
		if err != nil {
			return st, fmt.Errorf("read retention record %s: %w", a.Key, err)
		}
		var rec RetentionRecord
		switch err := json.Unmarshal(data, &rec); {
		case err != nil:
			st.garbage = append(st.garbage, Anomaly{Key: a.Key, Reason: "undecodable: " + err.Error()})
			continue
		case rec.Version > RetentionRecordVersion:
			// Ignoring it could show readers hours whose objects are gone.
			return st, fmt.Errorf("retention record %s: version %d is newer than this binary understands (%d)", a.Key, rec.Version, RetentionRecordVersion)
		case rec.Version != RetentionRecordVersion || rec.Table != table || RetentionKey(table, rec.Seq) != a.Key:
			st.garbage = append(st.garbage, Anomaly{Key: a.Key, Reason: "not a retention record of this table at this key"})
			continue
		}
		st.recs = append(st.recs, storedRetention{key: a.Key, modTime: a.LastModified, rec: rec})
	}
	return st, nil
}

// Retention returns the table's retention horizon: the newest horizons of
// its retention records (zero when it has none).
func (l *CommitLog) Retention(ctx context.Context, table string) (Horizon, error) {
	if err := ValidateCommitNames(table, "s", "p"); err != nil {
		return Horizon{}, fmt.Errorf("read retention: %w", err)
	}
	st, err := l.retention(ctx, table)
	if err != nil {
		return Horizon{}, err
	}
	return st.horizon(time.Time{}), nil
}

// maxRetentionAttempts bounds how often AdvanceRetention re-reads the
// sequence after losing a number to another writer.
const maxRetentionAttempts = 8

// AdvanceRetention writes a retention record raising the table's horizons
// to want (each horizon only moves forward; a zero one is left as it is)
// and returns the horizon in force afterwards. changed is false when the
// stored records already retire as much. Horizons must be whole hours.
func (l *CommitLog) AdvanceRetention(ctx context.Context, table string, want Horizon, writer string) (h Horizon, changed bool, err error) {
	if err := ValidateCommitNames(table, "s", "p"); err != nil {
		return Horizon{}, false, fmt.Errorf("advance retention: %w", err)
	}
	for _, t := range []time.Time{want.RawBefore, want.SummariesBefore} {
		if !t.Equal(t.Truncate(time.Hour)) {
			return Horizon{}, false, fmt.Errorf("advance retention of %s: %w: horizon %s is not a whole hour", table, ErrInvalidCommit, t)
		}
	}
	for range maxRetentionAttempts {
		st, err := l.retention(ctx, table)
		if err != nil {
			return Horizon{}, false, err
		}
		cur := st.horizon(time.Time{})
		next := cur
		next.raise(RetentionRecord{RawBefore: want.RawBefore.UTC(), SummariesBefore: want.SummariesBefore.UTC()})
		if next == cur {
			return cur, false, nil
		}
		rec := RetentionRecord{Version: RetentionRecordVersion, Table: table, Seq: st.next,
			RawBefore: next.RawBefore, SummariesBefore: next.SummariesBefore, Writer: writer, CommittedAt: l.now().UTC()}
		data, err := json.Marshal(rec)
		if err != nil {
			return Horizon{}, false, err
		}
		switch err := l.b.PutIfAbsent(ctx, RetentionKey(table, rec.Seq), data); {
		case err == nil:
			return next, true, nil
		case errors.Is(err, objstore.ErrExists):
			continue // another sweeper took the number: re-read, maybe nothing is left to do
		default:
			return Horizon{}, false, fmt.Errorf("advance retention of %s: write %s: %w", table, RetentionKey(table, rec.Seq), err)
		}
	}
	return Horizon{}, false, fmt.Errorf("advance retention of %s: %w: lost the sequence number %d times in a row", table, ErrCommitConflict, maxRetentionAttempts)
}

// ObjectHour returns the hour a raw, dead-letter or compacted object's key
// places it in (its dt=YYYY-MM-DD/hour=HH/ segments), and false for a key
// without them.
func ObjectHour(key string) (time.Time, bool) {
	segs := strings.Split(key, "/")
	for i := 0; i+1 < len(segs); i++ {
		d, ok := strings.CutPrefix(segs[i], "dt=")
		if !ok {
			continue
		}
		h, ok := strings.CutPrefix(segs[i+1], "hour=")
		if !ok {
			return time.Time{}, false
		}
		day, err := time.Parse(time.DateOnly, d)
		hour, herr := strconv.Atoi(h)
		if err != nil || herr != nil || hour < 0 || hour > 23 || len(h) != 2 {
			return time.Time{}, false
		}
		return day.Add(time.Duration(hour) * time.Hour), true
	}
	return time.Time{}, false
}

// retired reports whether an object key lies in an hour before the horizon.
func retired(key string, before time.Time) bool {
	if before.IsZero() {
		return false
	}
	h, ok := ObjectHour(key)
	return ok && h.Before(before)
}

// retire drops the objects of retired hours from the view.
func (v *liveView) retire(before time.Time) {
	if before.IsZero() {
		return
	}
	for k := range v.raw {
		if retired(k, before) {
			delete(v.raw, k)
		}
	}
	kept := v.dead[:0]
	for _, o := range v.dead {
		if !retired(o.Key, before) {
			kept = append(kept, o)
		}
	}
	v.dead = kept
}
