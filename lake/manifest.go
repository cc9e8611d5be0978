package lake

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sluicehq/sluice/objstore"
)

// Hour manifests let a reader find the inputs of one event-time hour without
// reading the whole history of a table. The manifest of (table, hour) lists
// every raw object a commit link named in that hour, with its link, as
// committed; the hour's compaction records (their own short sequence under
// the hour's prefix) are applied on top when the hour is read
// (HourLiveObjects). A manifest only ever grows: adding the objects of a set
// of links is a union, written with a conditional create or replace and
// retried on conflict, so two writers never lose each other's objects and
// adding the same links twice changes nothing. Whoever adds links to the
// manifests (the aggregator, before it moves its run cursor past them)
// guarantees that every link up to its cursor is in them.

// ManifestsRoot is the prefix of all hour manifests.
const ManifestsRoot = "_sluice/manifests/"

// HourManifestVersion is the HourManifest.Version this binary writes.
const HourManifestVersion = 1

// maxManifestAttempts bounds the re-reads after losing a manifest write.
const maxManifestAttempts = 8

// HourManifestKey is where the manifest of one event-time hour lives.
func HourManifestKey(table string, hour time.Time) string {
	hour = hour.UTC()
	return fmt.Sprintf("%s%s/dt=%s/hour=%02d.json", ManifestsRoot, table, hour.Format(time.DateOnly), hour.Hour())
}

// HourInput is one raw object of an hour with the link that committed it.
type HourInput struct {
	CommittedObject
	Source    string `json:"source"`
	Partition string `json:"partition"`
	// Seq is the link's number; for a version-1 link (V1) FirstOffset names it.
	Seq         int64     `json:"seq"`
	V1          bool      `json:"v1,omitempty"`
	FirstOffset int64     `json:"first_offset,omitempty"`
	CommittedAt time.Time `json:"committed_at"`
}

func (h HourInput) id() string {
	return fmt.Sprintf("%s\x00%s\x00%t\x00%d\x00%d\x00%s", h.Source, h.Partition, h.V1, h.FirstOffset, h.Seq, h.Key)
}

// HourManifest is the inputs of one event-time hour of a table.
type HourManifest struct {
	Version   int         `json:"version"`
	Table     string      `json:"table"`
	Hour      time.Time   `json:"hour"`
	Inputs    []HourInput `json:"inputs"` // sorted by link, then key
	UpdatedAt time.Time   `json:"updated_at"`
}

// inputHours returns the hours an object's rows lie in: the hour of its key
// (ingest and compaction write one object per event-time hour), or, for a
// key without one, every hour its event times span.
func inputHours(o CommittedObject) []time.Time {
	if h, ok := ObjectHour(o.Key); ok {
		return []time.Time{h}
	}
	var out []time.Time
	first := time.UnixMicro(o.MinEventTimeMicros).UTC().Truncate(time.Hour)
	last := time.UnixMicro(o.MaxEventTimeMicros).UTC()
	for h := first; !h.After(last) && len(out) < 24*366; h = h.Add(time.Hour) {
		out = append(out, h)
	}
	return out
}

// HourInputs groups the raw objects (with rows) of recs by the hours they
// lie in.
func HourInputs(recs []CommitRecord) map[time.Time][]HourInput {
	out := map[time.Time][]HourInput{}
	for _, r := range recs {
		for _, o := range r.Objects {
			if o.Kind != KindRaw || o.Rows == 0 {
				continue
			}
			in := HourInput{CommittedObject: o, Source: r.Source, Partition: r.Partition, Seq: r.Seq, CommittedAt: r.CommittedAt}
			if r.Version == 1 {
				in.V1, in.FirstOffset = true, r.FirstOffset
			}
			for _, h := range inputHours(o) {
				out[h] = append(out[h], in)
			}
		}
	}
	return out
}

// conditional is the bucket manifests need: replace only the version read.
func (l *CommitLog) conditional() (objstore.ConditionalBucket, error) {
	cb, ok := l.b.(objstore.ConditionalBucket)
	if !ok {
		return nil, fmt.Errorf("%w: store %s cannot replace objects conditionally", objstore.ErrUnsupported, l.b.Name())
	}
	return cb, nil
}

// Manifests says whether the log's store can keep hour manifests.
func (l *CommitLog) Manifests() bool {
	_, err := l.conditional()
	return err == nil
}

// HourManifest reads the manifest of one hour; found is false if there is none.
func (l *CommitLog) HourManifest(ctx context.Context, table string, hour time.Time) (m HourManifest, found bool, err error) {
	m, _, found, err = l.readManifest(ctx, table, hour)
	return m, found, err
}

func (l *CommitLog) readManifest(ctx context.Context, table string, hour time.Time) (HourManifest, string, bool, error) {
	return l.readManifestAt(ctx, HourManifestKey(table, hour), table, hour)
}

// readManifestAt reads a manifest of the hour's kind stored at key: an hour
// manifest, or the sweeper's index of an hour (sweep_changed.go).
func (l *CommitLog) readManifestAt(ctx context.Context, key, table string, hour time.Time) (HourManifest, string, bool, error) {
	cb, err := l.conditional()
	if err != nil {
		return HourManifest{}, "", false, err
	}
	data, version, err := cb.GetVersion(ctx, key)
	if objstore.IsNotExist(err) {
		return HourManifest{Version: HourManifestVersion, Table: table, Hour: hour.UTC()}, "", false, nil
	}
	if err != nil {
		return HourManifest{}, "", false, fmt.Errorf("read hour manifest %s: %w", key, err)
	}
	var m HourManifest
	if err := json.Unmarshal(data, &m); err != nil {
		return HourManifest{}, "", false, fmt.Errorf("hour manifest %s: %w", key, err)
	}
	if m.Version > HourManifestVersion {
		return HourManifest{}, "", false, fmt.Errorf("hour manifest %s: version %d is newer than this binary understands (%d)", key, m.Version, HourManifestVersion)
	}
	if m.Table != table || !m.Hour.Equal(hour.UTC()) {
		return HourManifest{}, "", false, fmt.Errorf("hour manifest %s: holds table %q hour %s", key, m.Table, m.Hour)
	}
	return m, version, true, nil
}

// AddToHourManifests adds the raw objects of recs to the manifests of the
// hours they lie in and returns those hours, sorted. Safe to repeat and to
// run concurrently: each manifest is a union, replaced only over the version
// read.
func (l *CommitLog) AddToHourManifests(ctx context.Context, table string, recs []CommitRecord) ([]time.Time, error) {
	cb, err := l.conditional()
	if err != nil {
		return nil, err
	}
	byHour := HourInputs(recs)
	hours := make([]time.Time, 0, len(byHour))
	for h := range byHour {
		hours = append(hours, h)
	}
	slices.SortFunc(hours, func(a, b time.Time) int { return a.Compare(b) })
	for _, h := range hours {
		if err := l.addToManifest(ctx, cb, table, h, byHour[h]); err != nil {
			return nil, err
		}
	}
	return hours, nil
}

func (l *CommitLog) addToManifest(ctx context.Context, cb objstore.ConditionalBucket, table string, hour time.Time, add []HourInput) error {
	return l.addToManifestAt(ctx, cb, HourManifestKey(table, hour), table, hour, add)
}

func (l *CommitLog) addToManifestAt(ctx context.Context, cb objstore.ConditionalBucket, key, table string, hour time.Time, add []HourInput) error {
	for range maxManifestAttempts {
		m, version, found, err := l.readManifestAt(ctx, key, table, hour)
		if err != nil {
			return err
		}
		have := make(map[string]bool, len(m.Inputs))
		for _, in := range m.Inputs {
			have[in.id()] = true
		}
		changed := false
		for _, in := range add {
			if !have[in.id()] {
				have[in.id()] = true
				m.Inputs = append(m.Inputs, in)
				changed = true
			}
		}
		if !changed {
			return nil
		}
		slices.SortFunc(m.Inputs, func(a, b HourInput) int { return strings.Compare(a.id(), b.id()) })
		m.Version, m.UpdatedAt = HourManifestVersion, l.now().UTC()
		data, err := json.Marshal(m)
		if err != nil {
			return fmt.Errorf("encode hour manifest %s: %w", key, err)
		}
		if found {
			err = cb.PutIfMatch(ctx, key, data, version)
		} else {
			err = cb.PutIfAbsent(ctx, key, data)
		}
		switch {
		case err == nil:
			return nil
		case objstore.IsExists(err) || objstore.IsChanged(err):
			continue // another writer added links meanwhile: merge again
		default:
			return fmt.Errorf("write hour manifest %s: %w", key, err)
		}
	}
	return fmt.Errorf("write hour manifest %s: %w: lost %d times in a row", key, ErrCommitConflict, maxManifestAttempts)
}

// HourLiveObjects returns the live raw objects of one hour from its
// manifest: its inputs with the hour's compaction records applied, in order
// (one listing of the hour's short sequence), and none if retention retired
// the hour before retiredBefore. A compaction record that does not apply is
// reported and ignored, as in LiveObjects.
func (l *CommitLog) HourLiveObjects(ctx context.Context, m HourManifest, retiredBefore time.Time) ([]LiveObject, error) {
	if !retiredBefore.IsZero() && m.Hour.Before(retiredBefore) {
		return nil, nil
	}
	v := &liveView{raw: make(map[string]LiveObject, len(m.Inputs))}
	for _, in := range m.Inputs {
		v.raw[in.Key] = LiveObject{CommittedObject: in.CommittedObject, Source: in.Source, Partition: in.Partition, CommittedAt: in.CommittedAt}
	}
	prefix := CompactionHourPrefix(m.Table, m.Hour)
	var listed []objstore.ObjectAttrs
	if err := l.b.Iter(ctx, prefix, func(a objstore.ObjectAttrs) error {
		if !strings.Contains(strings.TrimPrefix(a.Key, prefix), "/") {
			listed = append(listed, a)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list compaction records of %s: %w", prefix, err)
	}
	for _, a := range listed {
		c, ok, err := l.cachedCompaction(ctx, a)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		if c.bad != "" {
			v.anomalies = append(v.anomalies, Anomaly{Key: a.Key, Reason: c.bad})
			continue
		}
		sc := storedCompaction{key: a.Key, modTime: a.LastModified, rec: c.rec}
		if why := v.applicable(c.rec); why != "" {
			v.anomalies = append(v.anomalies, Anomaly{Key: a.Key, Reason: why})
			continue
		}
		v.apply(sc)
	}
	if len(v.anomalies) > 0 {
		l.report(prefix, v.anomalies)
	}
	out := make([]LiveObject, 0, len(v.raw))
	for _, o := range v.raw {
		out = append(out, o)
	}
	slices.SortFunc(out, func(a, b LiveObject) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

// cachedCompaction reads one compaction record through the log's cache;
// ok is false when it vanished since the listing.
func (l *CommitLog) cachedCompaction(ctx context.Context, a objstore.ObjectAttrs) (cachedCompaction, bool, error) {
	l.mu.Lock()
	if l.comps == nil {
		l.comps = map[string]cachedCompaction{}
	}
	c, ok := l.comps[a.Key]
	l.mu.Unlock()
	if ok && c.size == a.Size && c.modTime.Equal(a.LastModified) {
		return c, true, nil
	}
	c, found, err := l.loadCompaction(ctx, a)
	if err != nil || !found {
		return c, found, err
	}
	l.mu.Lock()
	l.comps[a.Key] = c
	l.mu.Unlock()
	return c, true, nil
}
