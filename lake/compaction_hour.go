package lake

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/objstore"
)

// A compaction only ever touches one event-time hour, so it can be planned
// and committed from that hour alone: its manifest (the raw objects the
// links name in the hour) and its own short sequence of compaction records.
// The whole-table view (view) reads every link and record of the table,
// which grows with history; the hour view reads one manifest, one listing
// and the hour's records (cached), whatever the table's age.
//
// The hour view decides only when it is known to agree with the whole-table
// view: every record of the hour's sequence applied on top of the manifest.
// A record that does not apply may replace an object whose link is not in
// the manifest yet (a compactor that planned from the whole table, or
// CommitCompaction called directly); the whole-table view is then read, as
// before. Compactors that plan from manifests add the links they read to
// the manifests first, so every object their records replace is in them.

// hourView builds the live objects of one hour from its manifest and its
// compaction records. The records are listed before the manifest is read
// (as view reads records before chains): a record's replaced objects are in
// the manifest before the record is written, so a listed record is never
// skipped for want of an object added meanwhile. clean is false when a
// record of the hour did not apply (or was garbage): the view may then
// differ from the whole-table view for this hour.
func (l *CommitLog) hourView(ctx context.Context, table string, hour time.Time) (v *liveView, clean bool, err error) {
	if _, err := l.conditional(); err != nil {
		return nil, false, err
	}
	hour = hour.UTC()
	prefix := CompactionHourPrefix(table, hour)
	var listed []objstore.ObjectAttrs
	if err := l.b.Iter(ctx, prefix, func(a objstore.ObjectAttrs) error {
		if !strings.Contains(strings.TrimPrefix(a.Key, prefix), "/") {
			listed = append(listed, a)
		}
		return nil
	}); err != nil {
		return nil, false, fmt.Errorf("list compaction records of %s: %w", prefix, err)
	}
	m, _, err := l.HourManifest(ctx, table, hour)
	if err != nil {
		return nil, false, err
	}
	v = &liveView{raw: make(map[string]LiveObject, len(m.Inputs)), next: map[string]int64{}}
	for _, in := range m.Inputs {
		v.raw[in.Key] = LiveObject{CommittedObject: in.CommittedObject, Source: in.Source, Partition: in.Partition, CommittedAt: in.CommittedAt}
	}
	clean = true
	for _, a := range listed {
		name := strings.TrimSuffix(strings.TrimPrefix(a.Key, prefix), ".json")
		if seq, perr := strconv.ParseInt(name, 10, 64); perr == nil && seq >= v.next[prefix] {
			v.next[prefix] = seq + 1
		}
		c, ok, err := l.cachedCompaction(ctx, a)
		if err != nil {
			return nil, false, err
		}
		if !ok {
			continue
		}
		if c.bad != "" {
			clean = false
			v.anomalies = append(v.anomalies, Anomaly{Key: a.Key, Reason: c.bad})
			continue
		}
		sc := storedCompaction{key: a.Key, modTime: a.LastModified, rec: c.rec}
		if why := v.applicable(c.rec); why != "" {
			clean = false
			v.skipped = append(v.skipped, sc)
			v.anomalies = append(v.anomalies, Anomaly{Key: a.Key, Reason: why})
			continue
		}
		v.apply(sc)
	}
	ret, err := l.retention(ctx, table)
	if err != nil {
		return nil, false, err
	}
	v.retention = ret
	v.retire(ret.horizon(time.Time{}).RawBefore)
	return v, clean, nil
}

// HourCompactionObjects returns the live raw objects of one hour, as the
// whole table's LiveObjects would list them for that hour, for a compactor
// that plans from the manifests (it must have added every link it knows of
// to them). ok is false when the hour's records do not all apply on top of
// the manifest: the caller must then plan from LiveObjects.
func (l *CommitLog) HourCompactionObjects(ctx context.Context, table string, hour time.Time) (live []LiveObject, ok bool, err error) {
	v, clean, err := l.hourView(ctx, table, hour)
	if err != nil || !clean {
		return nil, false, err
	}
	live = make([]LiveObject, 0, len(v.raw))
	for _, o := range v.raw {
		live = append(live, o)
	}
	slices.SortFunc(live, func(a, b LiveObject) int { return strings.Compare(a.Key, b.Key) })
	return live, true, nil
}
