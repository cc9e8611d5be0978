package aggregate

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/sluicehq/sluice/lake"
)

// CompactorConfig says which raw objects the Compactor merges and how.
type CompactorConfig struct {
	// TargetBytes is the size compacted objects aim for (default 128 MiB).
	TargetBytes int64 `yaml:"target_bytes"`
	// SmallFraction: objects below this fraction of TargetBytes are merged
	// (default 0.5); larger ones are left alone, so compacted objects are
	// not rewritten again and again.
	SmallFraction float64 `yaml:"small_fraction"`
	// CloseDelay: an hour is compacted once both the table's committed
	// event-time watermark and the wall clock are past its end by this much
	// (default 10m). Late data arriving after that is compacted by a later
	// run.
	CloseDelay time.Duration `yaml:"close_delay"`
	// IdleTimeout: a partition that committed nothing for this long
	// (relative to the table's newest commit) stops holding the watermark
	// back (default 5m).
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxGroupsPerRun bounds the work of one CompactTable call (default 4).
	MaxGroupsPerRun int `yaml:"max_groups_per_run"`
	// MaxGroupObjects bounds the inputs of one group (default 2000): each
	// input is a temporary file and, while its rows are being merged, an
	// open reader.
	MaxGroupObjects int `yaml:"max_group_objects"`
	// CommitWithin: a group whose record cannot be written within this
	// time of its first upload is abandoned (default 5m). The orphan
	// sweeper's grace must be longer, or it could delete a new object just
	// before its record names it.
	CommitWithin time.Duration `yaml:"commit_within"`
	// RowGroupRows caps the rows per row group of compacted objects
	// (default 1,048,576, as ingest).
	RowGroupRows int `yaml:"row_group_rows"`
	// TempDir holds the downloaded inputs and the output while it is
	// written (default os.TempDir()). It needs about twice TargetBytes.
	TempDir string `yaml:"temp_dir"`
}

// Compactor defaults.
const (
	DefaultCompactTargetBytes     = 128 << 20
	DefaultCompactIdleTimeout     = 5 * time.Minute
	DefaultCompactSmallFraction   = 0.5
	DefaultCompactCloseDelay      = 10 * time.Minute
	DefaultCompactMaxGroupsPerRun = 4
	DefaultCompactMaxGroupObjects = 2000
	DefaultCompactCommitWithin    = 5 * time.Minute
	defaultCompactRowGroupRows    = 1 << 20
)

// ErrBadCompactorConfig is wrapped by CompactorConfig.Validate's errors.
var ErrBadCompactorConfig = errors.New("invalid compaction config")

// WithDefaults fills zero fields.
func (c CompactorConfig) WithDefaults() CompactorConfig {
	if c.TargetBytes == 0 {
		c.TargetBytes = DefaultCompactTargetBytes
	}
	if c.SmallFraction == 0 {
		c.SmallFraction = DefaultCompactSmallFraction
	}
	if c.CloseDelay == 0 {
		c.CloseDelay = DefaultCompactCloseDelay
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultCompactIdleTimeout
	}
	if c.MaxGroupsPerRun == 0 {
		c.MaxGroupsPerRun = DefaultCompactMaxGroupsPerRun
	}
	if c.MaxGroupObjects == 0 {
		c.MaxGroupObjects = DefaultCompactMaxGroupObjects
	}
	if c.CommitWithin == 0 {
		c.CommitWithin = DefaultCompactCommitWithin
	}
	if c.RowGroupRows == 0 {
		c.RowGroupRows = defaultCompactRowGroupRows
	}
	return c
}

// Validate reports the first invalid field.
func (c CompactorConfig) Validate() error {
	switch {
	case c.TargetBytes < 1<<10:
		return fmt.Errorf("%w: target_bytes %d is below 1 KiB", ErrBadCompactorConfig, c.TargetBytes)
	case !(c.SmallFraction > 0 && c.SmallFraction <= 1):
		return fmt.Errorf("%w: small_fraction %v must be in (0, 1]", ErrBadCompactorConfig, c.SmallFraction)
	case c.CloseDelay < 0 || c.IdleTimeout < 0 || c.CommitWithin <= 0:
		return fmt.Errorf("%w: close_delay and idle_timeout must not be negative, commit_within must be positive", ErrBadCompactorConfig)
	case c.MaxGroupsPerRun < 1 || c.MaxGroupObjects < 2 || c.RowGroupRows < 1:
		return fmt.Errorf("%w: max_groups_per_run must be at least 1, max_group_objects at least 2, row_group_rows at least 1", ErrBadCompactorConfig)
	}
	return nil
}

// CompactionGroup is a set of live raw objects of one hour to merge.
type CompactionGroup struct {
	Hour    time.Time         // start of the event-time hour, UTC
	Objects []lake.LiveObject // sorted by key
	Bytes   int64             // input bytes
	Rows    int64
	// EstimatedBytes is the expected size of the merged rows (see
	// PlanCompaction); the Compactor splits its output by it.
	EstimatedBytes int64
}

// PlanCompaction chooses groups of small live raw objects of the table's
// closed hours (those ending at or before closedBefore), oldest hour first.
// In each hour the objects below SmallFraction of the target are split into
// as many groups as their total size holds targets (at least one), of
// about equal size, each of at least two objects; an hour with fewer than
// two small objects is left alone. Sizes are estimates of the merged
// output: rows times the bytes per row of the table's compacted objects
// already live, since merging many small objects saves their per-object
// overhead (footers, page headers, dictionaries; ten-fold on small test
// objects); with none yet, the input sizes, so a first output may be
// small and is merged again by a later run. At most MaxGroupsPerRun groups are
// returned, each of at most MaxGroupObjects objects. Objects whose key does
// not sit under their event-time hour are never touched. cfg must have its
// defaults applied.
func PlanCompaction(table string, live []lake.LiveObject, closedBefore time.Time, cfg CompactorConfig) []CompactionGroup {
	return planCompaction(table, live, closedBefore, cfg, compactedSizes(live))
}

// compactedSize is the rows and bytes of compacted objects, whose ratio
// estimates the size of merged rows.
type compactedSize struct {
	Rows  int64 `json:"rows"`
	Bytes int64 `json:"bytes"`
}

// compactedSizes sums the compacted objects among live.
func compactedSizes(live []lake.LiveObject) compactedSize {
	var s compactedSize
	for _, o := range live {
		if o.Compaction != "" && o.Rows > 0 {
			s.Rows += o.Rows
			s.Bytes += o.Size
		}
	}
	return s
}

// smallByHour groups the live objects the planner may merge by their
// event-time hour (Unix seconds), closed by closedBefore or not.
func smallByHour(table string, live []lake.LiveObject, cfg CompactorConfig) map[int64][]lake.LiveObject {
	small := int64(math.Ceil(float64(cfg.TargetBytes) * cfg.SmallFraction))
	byHour := map[int64][]lake.LiveObject{}
	for _, o := range live {
		if o.Kind != lake.KindRaw || o.Rows == 0 || o.Size >= small {
			continue
		}
		hour := time.UnixMicro(o.MinEventTimeMicros).UTC().Truncate(time.Hour)
		end := hour.Add(time.Hour)
		if o.MaxEventTimeMicros >= end.UnixMicro() || !strings.HasPrefix(o.Key, lake.RawHourPrefix(table, hour)) {
			continue
		}
		byHour[hour.Unix()] = append(byHour[hour.Unix()], o)
	}
	return byHour
}

// planCompaction is PlanCompaction with the sizes of compacted objects
// given: a planner that reads only some hours (the Compactor's cursor)
// estimates from the compacted objects it has seen over time.
func planCompaction(table string, live []lake.LiveObject, closedBefore time.Time, cfg CompactorConfig, compacted compactedSize) []CompactionGroup {
	byHour := smallByHour(table, live, cfg)
	for h := range byHour {
		if time.Unix(h, 0).Add(time.Hour).After(closedBefore) {
			delete(byHour, h)
		}
	}
	estimate := func(o lake.LiveObject) int64 { return o.Size }
	if compacted.Rows > 0 {
		perRow := float64(compacted.Bytes) / float64(compacted.Rows)
		estimate = func(o lake.LiveObject) int64 { return min(o.Size, max(1, int64(float64(o.Rows)*perRow))) }
	}
	hours := make([]int64, 0, len(byHour))
	for h, objs := range byHour {
		if len(objs) >= 2 {
			hours = append(hours, h)
		}
	}
	slices.Sort(hours)
	var out []CompactionGroup
	for _, h := range hours {
		objs := byHour[h]
		slices.SortFunc(objs, func(a, b lake.LiveObject) int { return cmp.Compare(a.Key, b.Key) })
		for _, g := range splitGroups(objs, estimate, cfg.TargetBytes, cfg.MaxGroupObjects) {
			if len(out) == cfg.MaxGroupsPerRun {
				return out
			}
			g.Hour = time.Unix(h, 0).UTC()
			out = append(out, g)
		}
	}
	return out
}

// splitGroups cuts objs (in order) into groups that close once they reach
// an equal share of the total of about target bytes each; a last group of
// a single object joins the one before it, or is left out when alone.
func splitGroups(objs []lake.LiveObject, estimate func(lake.LiveObject) int64, target int64, maxObjects int) []CompactionGroup {
	var total int64
	for _, o := range objs {
		total += estimate(o)
	}
	n := max(1, int64(math.Round(float64(total)/float64(target))))
	budget := (total + n - 1) / n
	var out []CompactionGroup
	var cur CompactionGroup
	for _, o := range objs {
		cur.Objects = append(cur.Objects, o)
		cur.Bytes += o.Size
		cur.Rows += o.Rows
		cur.EstimatedBytes += estimate(o)
		if cur.EstimatedBytes >= budget || len(cur.Objects) == maxObjects {
			out = append(out, cur)
			cur = CompactionGroup{}
		}
	}
	switch {
	case len(cur.Objects) >= 2:
		out = append(out, cur)
	case len(cur.Objects) == 1 && len(out) > 0 && len(out[len(out)-1].Objects) < maxObjects:
		last := &out[len(out)-1]
		last.Objects = append(last.Objects, cur.Objects[0])
		last.Bytes += cur.Bytes
		last.Rows += cur.Rows
		last.EstimatedBytes += cur.EstimatedBytes
	}
	if len(out) > 0 && len(out[len(out)-1].Objects) < 2 {
		out = out[:len(out)-1]
	}
	return out
}

// compactionClosedBefore is the end of the last hour that may be compacted:
// both the committed watermark and the wall clock must be CloseDelay past
// an hour's end. ok is false when nothing has been committed.
func compactionClosedBefore(recs []lake.CommitRecord, now time.Time, cfg CompactorConfig) (time.Time, bool) {
	wm, ok := Watermark(recs, 0, cfg.IdleTimeout, now)
	if !ok {
		return time.Time{}, false
	}
	if now.Before(wm) {
		wm = now
	}
	return wm.Add(-cfg.CloseDelay), true
}
