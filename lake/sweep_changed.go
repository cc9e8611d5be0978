package lake

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sluicehq/sluice/objstore"
)

// A sweep costs what changed since the previous sweep, not the table's
// history.
//
// What the sweeper deletes is found in three ways, each bounded:
//
//   - Hours that changed. The sweeper keeps a cursor per table in the lake
//     (SweepCursorKey): per partition the last link it has read, and the
//     hours it watches. A sweep reads the links after the cursor (one
//     listing per partition) and adds every object they name to its own
//     index of the hour (SweepIndexKey: every kind and every row count,
//     which the aggregator's manifests leave out), then lists the watched
//     hours and the hours those links touch, and judges each object there
//     against that hour's index and compaction records alone. An hour is
//     watched until a sweep finds everything in it older than the grace:
//     an orphan of a crashed flush is found once the retry's link lands in
//     its hour, a grace later at most. (Objects written into an hour after
//     the last sweep that listed it, with no link into it since, are left
//     to the slow pass below.)
//   - Hours compacted. A compactor leaves a hint (SweepHintKey) before its
//     first upload; the sweeper watches the hint's hour until a grace past
//     the hint, by when the record (written within commit_within of the
//     first upload, and the grace is longer) is older than the grace too:
//     then the replaced objects go, and so do the outputs of a compaction
//     that never committed.
//   - Everything else, slowly. Orphans are named by no record, so only a
//     listing finds one in an hour nothing touches again (a crashed flush
//     whose records were retried into other hours). Each sweep lists the
//     next slice of the table's objects in key order (at most
//     reconcileKeys keys of at most SweepConfig.ReconcileHours hours, 24 by
//     default), going on where the previous sweep stopped and starting over
//     at the end, and judges them like the others: a full pass over a
//     table of H hours takes H/ReconcileHours sweeps (a year: 365 sweeps,
//     four days at the default 15 minutes), and costs, per hour, a listing
//     of its objects (with the others of the slice), a listing of its
//     compaction records and a read of its index.
//
// Retention needs no state: keys sort by hour, so the retired objects are
// the first keys of the table's areas (and of each window of the summary
// store), listed until the first key past the horizon; once deleted they
// are not listed again.
//
// A key without an hour in it is never deleted by these sweeps: no index
// covers it. The first sweep (no cursor, or an unreadable one) and every
// dry run read the whole table, as every sweep did before, and the first
// writes the indexes and the cursor. An object is judged as before (by
// classify), from the records of its hour, which hold every record that
// names a key of the hour: links (in the index up to the cursor's links,
// and every link committed before the sweep began is read before any
// object is judged) and the hour's own compaction records. While the links after the cursor include any the chain does not
// continue (a gap, a link that does not fit, garbage), no uncommitted
// object is deleted: such a link may name it and be repaired.

// reconcileKeys bounds a slice of the slow full pass: one listing page
// on S3. SweepConfig.ReconcileHours bounds its hours.
const reconcileKeys = 1000

const sweepCursorVersion = 1

type sweepCursor struct {
	Version int         `json:"version"`
	Table   string      `json:"table"`
	Chains  []ChainMark `json:"chains"`
	// Hours are watched (listed by every sweep) until a sweep's cutoff
	// passes Until: everything written there before Until is then judged.
	Hours []watchedHour `json:"hours,omitempty"`
	// Reconcile is the key the slow full pass goes on after ("" = the
	// start of the raw area).
	Reconcile string    `json:"reconcile,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
}

type watchedHour struct {
	Hour  time.Time `json:"hour"`
	Until time.Time `json:"until"`
}

// watch is the set of watched hours, by Unix second of the hour.
type watch map[int64]time.Time

func (w watch) add(hour, until time.Time) {
	k := hour.UTC().Truncate(time.Hour).Unix()
	if cur, ok := w[k]; !ok || until.After(cur) {
		w[k] = until
	}
}

func (w watch) hours() []time.Time {
	out := make([]time.Time, 0, len(w))
	for k := range w {
		out = append(out, time.Unix(k, 0).UTC())
	}
	slices.SortFunc(out, time.Time.Compare)
	return out
}

func (s *Sweeper) readCursor(ctx context.Context, cb objstore.ConditionalBucket, table string) (sweepCursor, string, bool, error) {
	key := SweepCursorKey(table)
	c, version, found, err := ReadCursor(ctx, cb, key, func(c *sweepCursor) bool {
		return c.Version == sweepCursorVersion && c.Table == table
	})
	if err == nil && !found && version != "" {
		s.logger.Warn("sweep cursor unusable; sweeping the whole table", "key", key)
	}
	return c, version, found, err
}

// writeCursor replaces the cursor over the version read; ok is false when
// another sweeper moved it first (its cursor stands: it covers what this
// one would, for the links up to its marks; the rest is read again).
func (s *Sweeper) writeCursor(ctx context.Context, cb objstore.ConditionalBucket, table string, c sweepCursor, w watch, version string) (ok bool, err error) {
	c.Version, c.Table, c.UpdatedAt = sweepCursorVersion, table, s.now().UTC()
	c.Hours = nil
	for _, h := range w.hours() {
		c.Hours = append(c.Hours, watchedHour{Hour: h, Until: w[h.Unix()]})
	}
	lost, err := WriteCursor(ctx, cb, SweepCursorKey(table), c, version)
	if lost {
		s.logger.Info("another sweeper moved the sweep cursor first; keeping its", "table", table)
	}
	return !lost && err == nil, err
}

// indexObjects groups every object of recs that has an hour in its key by
// that hour.
func indexObjects(recs []CommitRecord) map[time.Time][]HourInput {
	out := map[time.Time][]HourInput{}
	for _, r := range recs {
		for _, o := range r.Objects {
			h, ok := ObjectHour(o.Key)
			if !ok {
				continue
			}
			in := HourInput{CommittedObject: o, Source: r.Source, Partition: r.Partition, Seq: r.Seq, CommittedAt: r.CommittedAt}
			if r.Version == 1 {
				in.V1, in.FirstOffset = true, r.FirstOffset
			}
			out[h] = append(out[h], in)
		}
	}
	return out
}

// addToIndex adds the objects of recs to the sweeper's hour indexes and
// returns the hours it touched.
func (s *Sweeper) addToIndex(ctx context.Context, cb objstore.ConditionalBucket, table string, recs []CommitRecord) ([]time.Time, error) {
	byHour := indexObjects(recs)
	hours := make([]time.Time, 0, len(byHour))
	for h := range byHour {
		hours = append(hours, h)
	}
	slices.SortFunc(hours, time.Time.Compare)
	for _, h := range hours {
		if err := s.log.addToManifestAt(ctx, cb, SweepIndexKey(table, h), table, h, byHour[h]); err != nil {
			return nil, fmt.Errorf("sweep index: %w", err)
		}
	}
	return hours, nil
}

// hourRefs adds what the records of one hour say to r: the hour's
// compaction records are listed before its index is read (see hourView),
// and every object they or the index name is named; the live view of the
// hour is the index's objects with the records applied in order. It
// returns the newest record's store time.
func (s *Sweeper) hourRefs(ctx context.Context, table string, hour, cutoff time.Time, r *sweepRefs) (newest time.Time, err error) {
	prefix := CompactionHourPrefix(table, hour)
	var listed []objstore.ObjectAttrs
	if err := s.raw.Iter(ctx, prefix, func(a objstore.ObjectAttrs) error {
		if !strings.Contains(strings.TrimPrefix(a.Key, prefix), "/") {
			listed = append(listed, a)
		}
		return nil
	}); err != nil {
		return newest, fmt.Errorf("list compaction records of %s: %w", prefix, err)
	}
	m, _, _, err := s.log.readManifestAt(ctx, SweepIndexKey(table, hour), table, hour)
	if err != nil {
		return newest, err
	}
	v := &liveView{raw: map[string]LiveObject{}}
	for _, in := range m.Inputs {
		r.named[in.Key] = true
		if in.Kind == KindDeadLetter {
			r.live[in.Key] = true
			continue
		}
		v.raw[in.Key] = LiveObject{CommittedObject: in.CommittedObject, Source: in.Source, Partition: in.Partition}
	}
	for _, a := range listed {
		if a.LastModified.After(newest) {
			newest = a.LastModified
		}
		c, ok, err := s.log.cachedCompaction(ctx, a)
		if err != nil {
			return newest, err
		}
		if !ok || c.bad != "" {
			continue
		}
		for _, o := range c.rec.Objects {
			r.named[o.Key] = true
		}
		sc := storedCompaction{key: a.Key, modTime: a.LastModified, rec: c.rec}
		if v.applicable(c.rec) != "" {
			continue
		}
		v.apply(sc)
		if sc.modTime.Before(cutoff) {
			for _, o := range c.rec.Replaced {
				r.replaced[o.Key] = true
			}
		}
	}
	for k := range v.raw {
		r.live[k] = true
	}
	return newest, nil
}

// hourPrefixes are the raw and dead-letter prefixes of an hour.
func hourPrefixes(table string, hour time.Time) []string {
	return []string{RawHourPrefix(table, hour), DeadLetterRoot + table + "/" + hourSegments(hour)}
}

// sweepChanged is a sweep driven by the cursor (see above).
func (s *Sweeper) sweepChanged(ctx context.Context, cb objstore.ConditionalBucket, table string, cur sweepCursor, version string, cutoff time.Time, rep *SweepReport, progress func(done, total int)) (err error) {
	now := s.now()
	ret, err := s.log.retention(ctx, table)
	if err != nil {
		return fmt.Errorf("sweep %s: %w", table, err)
	}
	if rep.Horizon == (Horizon{}) {
		rep.Horizon = ret.horizon(time.Time{})
	}
	var hints []objstore.ObjectAttrs
	if err := s.raw.Iter(ctx, SweepHintPrefix(table), func(a objstore.ObjectAttrs) error {
		hints = append(hints, a)
		return nil
	}); err != nil {
		return fmt.Errorf("sweep %s: list hints: %w", table, err)
	}
	// Every link committed before now is read before any object is judged:
	// an object older than the grace that a link names was committed by
	// then (the grace is longer than the slowest flush).
	fresh, skipped, err := s.log.linksSince(ctx, table, cur.Chains)
	if err != nil {
		return fmt.Errorf("sweep %s: %w", table, err)
	}
	marks, recs := AdvanceMarks(cur.Chains, fresh)
	touched, err := s.addToIndex(ctx, cb, table, recs)
	if err != nil {
		return fmt.Errorf("sweep %s: %w", table, err)
	}

	w := watch{}
	for _, h := range cur.Hours {
		w.add(h.Hour, h.Until)
	}
	for _, h := range touched {
		w.add(h, now)
	}
	for _, a := range hints {
		if h, ok := hintHour(table, a.Key); ok {
			w.add(h, a.LastModified.Add(s.cfg.Grace))
		}
	}

	// List the watched hours, the slice of the slow pass, and the retired
	// hours; objects first, records after (see Sweep).
	listed := map[string]objstore.ObjectAttrs{}
	youngest := watch{}
	for _, h := range w.hours() {
		for _, p := range hourPrefixes(table, h) {
			if err := s.raw.Iter(ctx, p, func(a objstore.ObjectAttrs) error {
				listed[a.Key] = a
				if !a.LastModified.Before(cutoff) {
					youngest.add(h, a.LastModified)
				}
				return nil
			}); err != nil {
				return fmt.Errorf("sweep %s: list %s: %w", table, p, err)
			}
		}
	}
	slice, nextPos, err := s.reconcileSlice(ctx, table, cur.Reconcile)
	if err != nil {
		return err
	}
	for _, a := range slice {
		listed[a.Key] = a
	}
	h := ret.horizon(cutoff)
	if !h.RawBefore.IsZero() {
		retiredObjs, err := s.listRetired(ctx, table, h.RawBefore)
		if err != nil {
			return err
		}
		for _, a := range retiredObjs {
			listed[a.Key] = a
		}
	}

	refs := sweepRefs{named: map[string]bool{}, live: map[string]bool{}, replaced: map[string]bool{},
		retiredBefore: h.RawBefore, summariesBefore: h.SummariesBefore, retention: ret}
	judged := watch{}
	for _, a := range listed {
		if hour, ok := ObjectHour(a.Key); ok {
			judged.add(hour, time.Time{})
		}
	}
	for _, hr := range w.hours() {
		judged.add(hr, time.Time{})
	}
	for _, hr := range judged.hours() {
		if !h.RawBefore.IsZero() && hr.Before(h.RawBefore) {
			continue // retired: every object goes, whatever names it
		}
		newest, err := s.hourRefs(ctx, table, hr, cutoff, &refs)
		if err != nil {
			return fmt.Errorf("sweep %s: %w", table, err)
		}
		if !newest.Before(cutoff) {
			youngest.add(hr, newest) // a record inside the grace: its replaced objects go later
		}
	}

	var items []SweepItem
	keys := make([]string, 0, len(listed))
	for k := range listed {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		a := listed[k]
		if _, ok := ObjectHour(k); !ok {
			continue // no index covers it (see above)
		}
		kind := classify(a, refs, cutoff)
		if kind == SweepUncommitted && skipped > 0 {
			continue
		}
		if kind != "" {
			items = append(items, SweepItem{Kind: kind, Key: k, Size: a.Size, LastModified: a.LastModified})
		}
	}
	if skipped > 0 {
		s.logger.Warn("links after the sweep cursor do not continue their chains; no uncommitted object is deleted until they are repaired",
			"table", table, "skipped_keys", skipped)
	}
	more, err := s.otherItems(ctx, table, refs, cutoff)
	if err != nil {
		return err
	}
	items = append(items, more...)

	// The re-check before deleting an uncommitted object reads the links
	// committed since (there should be none older than the grace).
	recheckMarks := marks
	recheck := func() (sweepRefs, error) {
		fresh, _, err := s.log.linksSince(ctx, table, recheckMarks)
		if err != nil {
			return refs, err
		}
		var recs []CommitRecord
		recheckMarks, recs = AdvanceMarks(recheckMarks, fresh)
		for _, r := range recs {
			for _, o := range r.Objects {
				refs.named[o.Key] = true
				refs.live[o.Key] = true
			}
		}
		return refs, nil
	}
	err = s.delete(ctx, table, items, refs, recheck, cutoff, rep, progress)

	// Hours stay watched while anything in them is inside the grace: the
	// listing came after now, so whatever was written there before now is
	// judged, or young and watched until it is not. A hint's hour stays
	// until a grace past the hint, for its record to land and age.
	next := watch{}
	for k, until := range w {
		if until.After(now) {
			next[k] = until
		}
	}
	for k, y := range youngest {
		next.add(time.Unix(k, 0), y)
	}
	if err != nil {
		return err
	}
	ok, err := s.writeCursor(ctx, cb, table, sweepCursor{Chains: marks, Reconcile: nextPos}, next, version)
	if err != nil || !ok {
		return err
	}
	return s.deleteHints(ctx, table, hints)
}

// deleteHints deletes the hints read, once the cursor watches their hours.
func (s *Sweeper) deleteHints(ctx context.Context, table string, hints []objstore.ObjectAttrs) error {
	for _, a := range hints {
		if err := s.raw.Delete(ctx, a.Key); err != nil && !objstore.IsNotExist(err) {
			return fmt.Errorf("sweep %s: delete hint %s: %w", table, a.Key, err)
		}
	}
	return nil
}

// hintHour parses the hour of a hint's key.
func hintHour(table, key string) (time.Time, bool) {
	name := strings.TrimPrefix(key, SweepHintPrefix(table))
	if len(name) < 13 {
		return time.Time{}, false
	}
	h, err := time.Parse("2006-01-02T15", name[:13])
	return h, err == nil
}

// NoteCompaction leaves the sweeper a hint that a compaction attempt is
// about to write objects into hour: the sweeper then looks at the hour
// until a grace past the hint (sweep_changed.go). Called before the first
// upload.
func (l *CommitLog) NoteCompaction(ctx context.Context, table string, hour time.Time, attempt string) error {
	key := SweepHintKey(table, hour, attempt)
	if err := l.b.Put(ctx, key, strings.NewReader(""), 0); err != nil {
		return fmt.Errorf("note compaction for the sweeper: %w", err)
	}
	return nil
}

// reconcileSlice lists the next slice of the slow full pass after the key
// after, and returns where the next one starts.
func (s *Sweeper) reconcileSlice(ctx context.Context, table, after string) ([]objstore.ObjectAttrs, string, error) {
	areas := []string{table + "/", DeadLetterRoot + table + "/"}
	area := 0
	if strings.HasPrefix(after, areas[1]) {
		area = 1
	} else if !strings.HasPrefix(after, areas[0]) {
		after = ""
	}
	var out []objstore.ObjectAttrs
	hours := map[int64]bool{}
	var last string
	full := false
	err := objstore.IterAfter(ctx, s.raw, areas[area], after, func(a objstore.ObjectAttrs) error {
		h, ok := ObjectHour(a.Key)
		if ok && !hours[h.Unix()] && len(hours) == s.cfg.ReconcileHours || len(out) == reconcileKeys {
			full = true
			return errStopWalk
		}
		if ok {
			hours[h.Unix()] = true
		}
		out = append(out, a)
		last = a.Key
		return nil
	})
	if err != nil && !errors.Is(err, errStopWalk) {
		return nil, "", fmt.Errorf("sweep %s: list %s: %w", table, areas[area], err)
	}
	switch {
	case full:
		return out, last, nil
	case area == 0:
		return out, areas[1], nil // the dead letters next
	}
	return out, "", nil // a full pass done: start over
}

// listRetired lists the objects of the raw and dead-letter areas in hours
// before before: the first keys of each, in key order.
func (s *Sweeper) listRetired(ctx context.Context, table string, before time.Time) ([]objstore.ObjectAttrs, error) {
	var out []objstore.ObjectAttrs
	for _, p := range []string{table + "/", DeadLetterRoot + table + "/"} {
		err := s.raw.Iter(ctx, p, func(a objstore.ObjectAttrs) error {
			h, ok := ObjectHour(a.Key)
			if !ok {
				return nil // a key without an hour sorts anywhere
			}
			if !h.Before(before) {
				return errStopWalk
			}
			out = append(out, a)
			return nil
		})
		if err != nil && !errors.Is(err, errStopWalk) {
			return nil, fmt.Errorf("sweep %s: list %s: %w", table, p, err)
		}
	}
	return out, nil
}
