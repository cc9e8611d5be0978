package lake

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/sluicehq/sluice/objstore"
)

// SweepConfig says how the sweeper deletes what readers no longer see.
type SweepConfig struct {
	// Grace is how old an object no record names must be before it is
	// deleted, and how long after a compaction or retention record the
	// objects it took out of the live view stay readable. It must exceed
	// the slowest flush (ingest.flush_timeout, from the first upload to the
	// commit), the slowest compaction, and the longest read of a reader of
	// the live view. Default 1h; longer costs only space.
	Grace time.Duration `yaml:"grace"`
	// DryRun lists what would be deleted and deletes nothing, writes no
	// retention record.
	DryRun bool `yaml:"dry_run"`
	// ReconcileHours is how many hours of the table's history each sweep
	// lists again to find orphans nothing points to (sweep_changed.go):
	// a full pass over H hours takes H/ReconcileHours sweeps. Default 24.
	ReconcileHours int `yaml:"reconcile_hours"`
}

// DefaultSweepGrace is SweepConfig.Grace's default: far above the default
// flush timeout (2m).
const DefaultSweepGrace = time.Hour

// DefaultReconcileHours is SweepConfig.ReconcileHours's default: a year of
// history is listed again every 365 sweeps (four days at the default
// aggregate.sweep.every of 15m).
const DefaultReconcileHours = 24

// ErrBadGrace is returned by SweepConfig.Validate for a negative grace.
var ErrBadGrace = errors.New("sweep grace must not be negative")

// WithDefaults fills zero fields.
func (c SweepConfig) WithDefaults() SweepConfig {
	if c.Grace == 0 {
		c.Grace = DefaultSweepGrace
	}
	if c.ReconcileHours == 0 {
		c.ReconcileHours = DefaultReconcileHours
	}
	return c
}

// Validate reports an invalid field.
func (c SweepConfig) Validate() error {
	if c.Grace < 0 {
		return fmt.Errorf("%w (got %s)", ErrBadGrace, c.Grace)
	}
	if c.ReconcileHours < 0 {
		return fmt.Errorf("sweep reconcile_hours must not be negative (got %d)", c.ReconcileHours)
	}
	return nil
}

// TableRetention is a table's retention, as the schema says it (the lake
// does not import the schema). Zero durations keep data forever.
type TableRetention struct {
	Raw, Summaries time.Duration
	// Unit is the span retention is applied in (horizons are multiples of
	// it since the epoch): at least an hour; a day, or the rollup's
	// coarsest window, so a retired span never cuts a window.
	Unit time.Duration
}

// Want returns the horizons the retention asks for at now.
func (r TableRetention) Want(now time.Time) Horizon {
	unit := max(r.Unit, time.Hour)
	floor := func(d time.Duration) time.Time {
		if d <= 0 {
			return time.Time{}
		}
		t := now.Add(-d).UTC()
		return time.Unix(0, 0).UTC().Add(t.Sub(time.Unix(0, 0)) / unit * unit)
	}
	return Horizon{RawBefore: floor(r.Raw), SummariesBefore: floor(r.Summaries)}
}

// Kinds of what the sweeper deletes, the kind label of its metrics.
const (
	SweepUncommitted = "uncommitted" // a raw or dead-letter object no record names (a crashed flush or compaction)
	SweepReplaced    = "replaced"    // replaced by a compaction record stored more than the grace ago
	SweepRetired     = "retired"     // in an hour a retention record retired more than the grace ago
	SweepSummary     = "summary"     // a summary object of windows retention retired
	SweepUpload      = "upload"      // an abandoned multipart upload or temporary file
	SweepRecord      = "record"      // a retention record superseded by a newer one
)

var sweepKinds = []string{SweepUncommitted, SweepReplaced, SweepRetired, SweepSummary, SweepUpload, SweepRecord}

// SweepItem is one thing the sweeper deleted (or, dry, would delete).
type SweepItem struct {
	Kind         string
	Key          string
	Size         int64 // bytes
	LastModified time.Time
	summary      bool                       // in the summary bucket
	upload       *objstore.IncompleteUpload // an upload to abort
}

// SweepReport says what one sweep of a table did.
type SweepReport struct {
	Table  string
	DryRun bool
	// Horizon is the retention in force after the run (dry: as it would be).
	Horizon Horizon
	// Advanced says a retention record was written (dry: would be).
	Advanced bool
	// Items were deleted (dry: would be), in the order they were found.
	Items []SweepItem
	// Kept are candidates that a re-check right before deleting kept: a
	// record named them meanwhile.
	Kept int
	// Failed deletions; the error of the first is returned.
	Failed int
}

// Count returns how many items of kind were deleted and their bytes.
func (r SweepReport) Count(kind string) (n int, bytes int64) {
	for _, it := range r.Items {
		if it.Kind == kind {
			n++
			bytes += it.Size
		}
	}
	return n, bytes
}

// SweepMetrics are the sweeper series of one process, created once and
// given to each of its sweepers.
type SweepMetrics struct {
	objects   *prometheus.CounterVec // table, kind
	bytes     *prometheus.CounterVec // table, kind
	runs      *prometheus.CounterVec // table, outcome
	errors    *prometheus.CounterVec // table
	kept      *prometheus.CounterVec // table
	horizon   *prometheus.GaugeVec   // table, area
	lastSwept *prometheus.GaugeVec   // table
	lastRun   *prometheus.GaugeVec   // table, kind: deleted by the last run (dry: would be)
}

// NewSweepMetrics creates the series on reg (nil: unregistered).
func NewSweepMetrics(reg prometheus.Registerer) *SweepMetrics {
	f := promauto.With(reg)
	return &SweepMetrics{
		objects: f.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_lake_sweep_deleted_objects_total",
			Help: "Objects the sweeper deleted, by kind: uncommitted, replaced (by compaction), retired (by retention), summary (retired), upload (abandoned), record (superseded retention record).",
		}, []string{"table", "kind"}),
		bytes: f.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_lake_sweep_deleted_bytes_total",
			Help: "Bytes of the objects the sweeper deleted, by kind.",
		}, []string{"table", "kind"}),
		runs: f.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_lake_sweep_runs_total",
			Help: "Sweeps of a table by outcome: ok, error, dry_run.",
		}, []string{"table", "outcome"}),
		errors: f.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_lake_sweep_errors_total",
			Help: "Deletions and listings of the sweeper that failed.",
		}, []string{"table"}),
		kept: f.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_lake_sweep_rechecked_kept_objects_total",
			Help: "Candidates the re-check right before deleting kept, because a record named them meanwhile.",
		}, []string{"table"}),
		horizon: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_lake_retention_horizon_timestamp_seconds",
			Help: "Event time before which a table's data is retired, by area (raw, summaries); 0 when nothing is.",
		}, []string{"table", "area"}),
		lastSwept: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_lake_sweep_last_success_timestamp_seconds",
			Help: "When a sweep of the table last finished without error.",
		}, []string{"table"}),
		lastRun: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_lake_sweep_last_run_objects",
			Help: "Objects the last sweep of the table deleted (a dry run: would delete), by kind.",
		}, []string{"table", "kind"}),
	}
}

// Sweeper deletes, per table, what no reader of the live view can see any
// more: uncommitted objects older than the grace, objects replaced by
// compaction or retired by retention a grace after their record, abandoned
// uploads, and summaries retention retired. It never deletes a live object
// (named by a commit link and not replaced, or created by an applied
// compaction, in an hour not retired): every candidate is checked again
// against freshly read records right before it is deleted.
//
// Several sweepers may run at once (a scheduled one and `sluice sweep`):
// deletes are idempotent and retention records are conditional creates.
type Sweeper struct {
	cfg       SweepConfig
	raw       objstore.Bucket
	summaries objstore.Bucket // nil: summaries are not swept
	log       *CommitLog
	writer    string
	logger    *slog.Logger
	m         *SweepMetrics
	now       func() time.Time
}

// NewSweeper returns a sweeper of the lake in raw and, if summaries is not
// nil, of the summary objects in it. writer names this process in the
// retention records it writes. A nil m keeps the metrics unregistered.
func NewSweeper(cfg SweepConfig, raw, summaries objstore.Bucket, writer string, logger *slog.Logger, m *SweepMetrics) (*Sweeper, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if m == nil {
		m = NewSweepMetrics(nil)
	}
	return &Sweeper{cfg: cfg, raw: raw, summaries: summaries, log: NewCommitLog(raw).WithLogger(logger),
		writer: writer, logger: logger, m: m, now: time.Now}, nil
}

// WithClock makes the sweeper (and the records it writes) use now instead
// of the wall clock, and returns s; for tests that age objects without
// waiting.
func (s *Sweeper) WithClock(now func() time.Time) *Sweeper {
	s.now, s.log.now = now, now
	return s
}

// Config is the sweeper's configuration with defaults applied.
func (s *Sweeper) Config() SweepConfig { return s.cfg }

// InitTableMetrics makes a table's series start at zero.
func (s *Sweeper) InitTableMetrics(table string) {
	for _, k := range sweepKinds {
		s.m.objects.WithLabelValues(table, k)
		s.m.bytes.WithLabelValues(table, k)
	}
	for _, o := range []string{"ok", "error", "dry_run"} {
		s.m.runs.WithLabelValues(table, o)
	}
	s.m.errors.WithLabelValues(table)
	s.m.kept.WithLabelValues(table)
}

// sweepRefs is what the records say about a table's objects.
type sweepRefs struct {
	named    map[string]bool // by any commit record (on a chain or not) or compaction record (applied or not)
	live     map[string]bool // live raw and dead-letter objects
	replaced map[string]bool // replaced by an applied compaction record stored before the cutoff
	// retiredBefore is the raw horizon of the retention records stored
	// before the cutoff; summariesBefore the same for summaries.
	retiredBefore, summariesBefore time.Time
	retention                      retentionState
	// young are the hours of compaction records stored at or after the
	// cutoff, with the newest's time: their replaced objects go later.
	young watch
}

// classify says what an object of the raw or dead-letter area is to the
// sweeper: one of the Sweep kinds if it may be deleted, "" if it stays.
// Only objects last modified before cutoff are ever deleted; a live object
// only when its hour is retired.
func classify(a objstore.ObjectAttrs, r sweepRefs, cutoff time.Time) string {
	switch {
	case !a.LastModified.Before(cutoff):
		return ""
	case retired(a.Key, r.retiredBefore):
		return SweepRetired
	case r.live[a.Key]:
		return ""
	case !r.named[a.Key]:
		return SweepUncommitted
	case r.replaced[a.Key]:
		return SweepReplaced
	}
	return "" // named by a record off the chains or a compaction that did not apply: kept for repair
}

// refs reads the table's records: every one, after the objects were listed,
// so a record committed meanwhile is seen.
func (s *Sweeper) refs(ctx context.Context, table string, cutoff time.Time) (sweepRefs, error) {
	r := sweepRefs{named: map[string]bool{}, live: map[string]bool{}, replaced: map[string]bool{}}
	recs, _, err := s.log.scan(ctx, CommitPrefix(table), nil)
	if err != nil {
		return r, fmt.Errorf("read commit records of %s: %w", table, err)
	}
	for _, rec := range recs {
		for _, o := range rec.Objects {
			r.named[o.Key] = true
		}
	}
	v, err := s.log.view(ctx, table)
	if err != nil {
		return r, err
	}
	for k := range v.raw {
		r.live[k] = true
	}
	for _, o := range v.dead {
		r.live[o.Key] = true
	}
	for _, list := range [][]storedCompaction{v.applied, v.skipped} {
		for _, sc := range list {
			for _, o := range sc.rec.Objects {
				r.named[o.Key] = true
			}
		}
	}
	r.young = watch{}
	for _, sc := range v.applied {
		if sc.modTime.Before(cutoff) {
			for _, o := range sc.rec.Replaced {
				r.replaced[o.Key] = true
			}
		} else {
			r.young.add(sc.rec.Hour, sc.modTime)
		}
	}
	h := v.retention.horizon(cutoff)
	r.retiredBefore, r.summariesBefore, r.retention = h.RawBefore, h.SummariesBefore, v.retention
	return r, nil
}

// recheckEvery is how many deletions one re-read of the records covers.
const recheckEvery = 500

// Sweep sweeps one table. progress, if not nil, is called with the items
// handled so far and their total. The report says what was deleted (or,
// dry, would be); the error is the first failure.
func (s *Sweeper) Sweep(ctx context.Context, table string, ret TableRetention, progress func(done, total int)) (rep SweepReport, err error) {
	rep = SweepReport{Table: table, DryRun: s.cfg.DryRun}
	defer func() {
		outcome := "ok"
		switch {
		case err != nil:
			outcome = "error"
			s.m.errors.WithLabelValues(table).Inc()
		case s.cfg.DryRun:
			outcome = "dry_run"
		default:
			s.m.lastSwept.WithLabelValues(table).Set(float64(s.now().Unix()))
			s.setHorizon(table, rep.Horizon)
		}
		s.m.runs.WithLabelValues(table, outcome).Inc()
		for _, k := range sweepKinds {
			n, _ := rep.Count(k)
			s.m.lastRun.WithLabelValues(table, k).Set(float64(n))
		}
	}()
	if err := ValidateCommitNames(table, "s", "p"); err != nil {
		return rep, fmt.Errorf("sweep: %w", err)
	}
	now := s.now()
	cutoff := now.Add(-s.cfg.Grace)

	// Retention first: its record retires hours now; their objects go in a
	// later sweep, once the record is older than the grace.
	if err := s.retire(ctx, table, ret.Want(now), &rep); err != nil {
		return rep, err
	}
	defer func() {
		level := slog.LevelDebug
		if len(rep.Items) > 0 || rep.Failed > 0 {
			level = slog.LevelInfo
		}
		if !s.cfg.DryRun {
			s.logger.Log(ctx, level, "swept", "table", table, "deleted", len(rep.Items), "kept_by_recheck", rep.Kept, "failed", rep.Failed)
		}
	}()
	// With a cursor, only what changed is read (sweep_changed.go). A dry
	// run reads the whole table and writes nothing.
	cb, cerr := s.log.conditional()
	incremental := cerr == nil && !s.cfg.DryRun
	var cur sweepCursor
	var version string
	var chains []Chain
	if incremental {
		var found bool
		if cur, version, found, err = s.readCursor(ctx, cb, table); err != nil {
			return rep, err
		}
		if found {
			return rep, s.sweepChanged(ctx, cb, table, cur, version, cutoff, &rep, progress)
		}
		// The first sweep: the links are read before the objects are
		// listed, so the index written after it covers every link up to
		// the cursor.
		if chains, _, err = s.log.linksSince(ctx, table, nil); err != nil {
			return rep, fmt.Errorf("sweep %s: %w", table, err)
		}
	}
	// Objects are listed before the records are read.
	listed, young, err := s.listOlder(ctx, table, cutoff)
	if err != nil {
		return rep, err
	}
	refs, err := s.refs(ctx, table, cutoff)
	if err != nil {
		return rep, fmt.Errorf("sweep %s: %w", table, err)
	}
	if rep.Horizon == (Horizon{}) {
		rep.Horizon = refs.retention.horizon(time.Time{})
	}
	items, err := s.candidates(ctx, table, listed, refs, cutoff)
	if err != nil {
		return rep, err
	}
	if s.cfg.DryRun {
		rep.Items = items
		if progress != nil {
			progress(len(items), len(items))
		}
		return rep, nil
	}
	recheck := func() (sweepRefs, error) { return s.refs(ctx, table, cutoff) }
	if err := s.delete(ctx, table, items, refs, recheck, cutoff, &rep, progress); err != nil || !incremental {
		return rep, err
	}
	return rep, s.startCursor(ctx, cb, table, chains, young, refs.young, version)
}

// startCursor writes the indexes of every link read before the first
// sweep and the cursor after them, watching the hours with objects or
// compaction records inside the grace and the hours of the hints.
func (s *Sweeper) startCursor(ctx context.Context, cb objstore.ConditionalBucket, table string, chains []Chain, young, youngRecords watch, version string) error {
	var hints []objstore.ObjectAttrs
	if err := s.raw.Iter(ctx, SweepHintPrefix(table), func(a objstore.ObjectAttrs) error {
		hints = append(hints, a)
		return nil
	}); err != nil {
		return fmt.Errorf("sweep %s: list hints: %w", table, err)
	}
	marks, recs := AdvanceMarks(nil, chains)
	if _, err := s.addToIndex(ctx, cb, table, recs); err != nil {
		return fmt.Errorf("sweep %s: %w", table, err)
	}
	w := watch{}
	for _, src := range []watch{young, youngRecords} {
		for k, until := range src {
			w.add(time.Unix(k, 0), until)
		}
	}
	for _, a := range hints {
		if h, ok := hintHour(table, a.Key); ok {
			w.add(h, a.LastModified.Add(s.cfg.Grace))
		}
	}
	ok, err := s.writeCursor(ctx, cb, table, sweepCursor{Chains: marks}, w, version)
	if err != nil || !ok {
		return err
	}
	return s.deleteHints(ctx, table, hints)
}

// retire advances the table's retention to want (dry: says how it would)
// and puts the horizon in rep.
func (s *Sweeper) retire(ctx context.Context, table string, want Horizon, rep *SweepReport) error {
	if want.RawBefore.IsZero() && want.SummariesBefore.IsZero() {
		return nil
	}
	if s.cfg.DryRun {
		cur, err := s.log.Retention(ctx, table)
		if err != nil {
			return fmt.Errorf("sweep %s: %w", table, err)
		}
		rep.Horizon = cur
		rep.Horizon.raise(RetentionRecord{RawBefore: want.RawBefore, SummariesBefore: want.SummariesBefore})
		rep.Advanced = rep.Horizon != cur
		return nil
	}
	h, changed, err := s.log.AdvanceRetention(ctx, table, want, s.writer)
	if err != nil {
		return fmt.Errorf("sweep %s: %w", table, err)
	}
	rep.Horizon, rep.Advanced = h, changed
	if changed {
		s.logger.Info("retention advanced", "table", table, "raw_before", h.RawBefore, "summaries_before", h.SummariesBefore)
	}
	return nil
}

// listOlder lists the table's raw and dead-letter objects older than
// cutoff, and the hours of the younger ones with the newest's time.
func (s *Sweeper) listOlder(ctx context.Context, table string, cutoff time.Time) ([]objstore.ObjectAttrs, watch, error) {
	var listed []objstore.ObjectAttrs
	young := watch{}
	for _, prefix := range []string{table + "/", DeadLetterRoot + table + "/"} {
		if err := s.raw.Iter(ctx, prefix, func(a objstore.ObjectAttrs) error {
			if a.LastModified.Before(cutoff) {
				listed = append(listed, a)
			} else if h, ok := ObjectHour(a.Key); ok {
				young.add(h, a.LastModified)
			}
			return nil
		}); err != nil {
			return nil, nil, fmt.Errorf("sweep %s: list %s: %w", table, prefix, err)
		}
	}
	return listed, young, nil
}

// candidates are what the sweep would delete: the listed objects no
// reader can see, retention records a newer one (older than the grace)
// supersedes, abandoned uploads, and the summaries retention retired.
func (s *Sweeper) candidates(ctx context.Context, table string, listed []objstore.ObjectAttrs, refs sweepRefs, cutoff time.Time) ([]SweepItem, error) {
	var items []SweepItem
	for _, a := range listed {
		if kind := classify(a, refs, cutoff); kind != "" {
			items = append(items, SweepItem{Kind: kind, Key: a.Key, Size: a.Size, LastModified: a.LastModified})
		}
	}
	more, err := s.otherItems(ctx, table, refs, cutoff)
	if err != nil {
		return nil, err
	}
	return append(items, more...), nil
}

// otherItems are the candidates that are not raw or dead-letter objects:
// retention records a newer one (older than the grace) supersedes,
// abandoned uploads, and the summaries retention retired.
func (s *Sweeper) otherItems(ctx context.Context, table string, refs sweepRefs, cutoff time.Time) ([]SweepItem, error) {
	var items []SweepItem
	var newestOld int64 = -1
	for _, r := range refs.retention.recs {
		if r.modTime.Before(cutoff) {
			newestOld = r.rec.Seq
		}
	}
	for _, r := range refs.retention.recs {
		if r.rec.Seq < newestOld {
			items = append(items, SweepItem{Kind: SweepRecord, Key: r.key, LastModified: r.modTime})
		}
	}
	// Records are written with PutIfAbsent, which a killed local writer can
	// leave as a temporary file too.
	up, err := s.uploads(ctx, s.raw, []string{table + "/", DeadLetterRoot + table + "/",
		CommitPrefix(table), CompactionPrefix(table), RetentionPrefix(table)}, cutoff, false)
	if err != nil {
		return nil, fmt.Errorf("sweep %s: %w", table, err)
	}
	items = append(items, up...)
	if s.summaries != nil {
		sums, err := s.summaryItems(ctx, table, refs.summariesBefore)
		if err != nil {
			return nil, fmt.Errorf("sweep %s: %w", table, err)
		}
		items = append(items, sums...)
		up, err := s.uploads(ctx, s.summaries, []string{table + "/"}, cutoff, true)
		if err != nil {
			return nil, fmt.Errorf("sweep %s: %w", table, err)
		}
		items = append(items, up...)
	}
	return items, nil
}

// delete deletes items, keeping any raw-area object that is no longer a
// candidate. Only a new record can save an uncommitted object (replaced
// stays replaced, retired stays retired), so the records are read again
// right before the first uncommitted object and every recheckEvery after.
func (s *Sweeper) delete(ctx context.Context, table string, items []SweepItem, refs sweepRefs, recheck func() (sweepRefs, error), cutoff time.Time, rep *SweepReport, progress func(done, total int)) error {
	var firstErr error
	sinceRead := recheckEvery
	for i, it := range items {
		if err := ctx.Err(); err != nil {
			return err
		}
		if it.Kind == SweepUncommitted {
			if sinceRead == recheckEvery {
				var err error
				if refs, err = recheck(); err != nil {
					return fmt.Errorf("sweep %s: re-check: %w", table, err)
				}
				sinceRead = 0
			}
			sinceRead++
		}
		switch it.Kind {
		case SweepUncommitted, SweepReplaced, SweepRetired:
			if classify(objstore.ObjectAttrs{Key: it.Key, Size: it.Size, LastModified: it.LastModified}, refs, cutoff) != it.Kind {
				rep.Kept++
				s.m.kept.WithLabelValues(table).Inc()
				continue
			}
		}
		var err error
		switch {
		case it.upload != nil:
			b := s.raw
			if it.summary {
				b = s.summaries
			}
			u, _ := objstore.AsUploads(b)
			err = u.AbortUpload(ctx, *it.upload)
		case it.summary:
			err = s.summaries.Delete(ctx, it.Key)
		default:
			err = s.raw.Delete(ctx, it.Key)
		}
		if err != nil {
			rep.Failed++
			s.m.errors.WithLabelValues(table).Inc()
			if firstErr == nil {
				firstErr = fmt.Errorf("sweep %s: delete %s: %w", table, it.Key, err)
			}
			continue
		}
		rep.Items = append(rep.Items, it)
		s.m.objects.WithLabelValues(table, it.Kind).Inc()
		s.m.bytes.WithLabelValues(table, it.Kind).Add(float64(it.Size))
		if progress != nil {
			progress(i+1, len(items))
		}
	}
	if progress != nil {
		progress(len(items), len(items))
	}
	return firstErr
}

// uploads lists the incomplete uploads under the prefixes begun before cutoff.
func (s *Sweeper) uploads(ctx context.Context, b objstore.Bucket, prefixes []string, cutoff time.Time, summary bool) ([]SweepItem, error) {
	u, ok := objstore.AsUploads(b)
	if !ok {
		return nil, nil
	}
	var out []SweepItem
	for _, p := range prefixes {
		err := u.IncompleteUploads(ctx, p, func(iu objstore.IncompleteUpload) error {
			if iu.Initiated.Before(cutoff) {
				out = append(out, SweepItem{Kind: SweepUpload, Key: iu.Key, Size: iu.Size, LastModified: iu.Initiated, summary: summary, upload: &iu})
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// summaryItems lists the summary objects of units that start before the
// summaries horizon (which is a multiple of the coarsest window, so every
// window of such a unit ends by it).
func (s *Sweeper) summaryItems(ctx context.Context, table string, before time.Time) ([]SweepItem, error) {
	if before.IsZero() {
		return nil, nil
	}
	// A window's keys sort by the units' start, so the listing of each
	// window stops at its first unit past the horizon and goes on after
	// the window: it costs the retired objects and a listing per window,
	// not every summary ever written.
	var out []SweepItem
	prefix := table + "/"
	startAfter := ""
	for range 1 << 20 {
		next := ""
		err := objstore.IterAfter(ctx, s.summaries, prefix, startAfter, func(a objstore.ObjectAttrs) error {
			start, ok := SummaryUnitStart(table, a.Key)
			if !ok {
				return nil
			}
			if start.Before(before) {
				out = append(out, SweepItem{Kind: SweepSummary, Key: a.Key, Size: a.Size, LastModified: a.LastModified, summary: true})
				return nil
			}
			window, _, _ := strings.Cut(strings.TrimPrefix(a.Key, prefix), "/")
			next = prefix + window + "/" + keyMax
			return errStopWalk
		})
		if err != nil && !errors.Is(err, errStopWalk) {
			return nil, fmt.Errorf("list summaries of %s: %w", table, err)
		}
		if next == "" {
			return out, nil
		}
		startAfter = next
	}
	return nil, fmt.Errorf("list summaries of %s: the listing does not advance", table)
}

// keyMax sorts after every key segment.
const keyMax = "\U0010FFFF"

// SummaryUnitStart parses a summary object's key,
// <table>/<window>/dt=YYYY-MM-DD/hour=HH.parquet or .../day.parquet, and
// returns the start of the unit of event time it holds.
func SummaryUnitStart(table, key string) (time.Time, bool) {
	rest, ok := strings.CutPrefix(key, table+"/")
	if !ok {
		return time.Time{}, false
	}
	segs := strings.Split(rest, "/")
	if len(segs) != 3 || !strings.HasPrefix(segs[1], "dt=") {
		return time.Time{}, false
	}
	day, err := time.Parse(time.DateOnly, strings.TrimPrefix(segs[1], "dt="))
	if err != nil {
		return time.Time{}, false
	}
	switch name := segs[2]; {
	case name == "day.parquet":
		return day, true
	case strings.HasPrefix(name, "hour=") && strings.HasSuffix(name, ".parquet"):
		h, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(name, "hour="), ".parquet"))
		if err != nil || h < 0 || h > 23 {
			return time.Time{}, false
		}
		return day.Add(time.Duration(h) * time.Hour), true
	}
	return time.Time{}, false
}

// setHorizon publishes a table's retention horizon.
func (s *Sweeper) setHorizon(table string, h Horizon) {
	for _, a := range []struct {
		area string
		t    time.Time
	}{{"raw", h.RawBefore}, {"summaries", h.SummariesBefore}} {
		v := 0.0
		if !a.t.IsZero() {
			v = float64(a.t.Unix())
		}
		s.m.horizon.WithLabelValues(table, a.area).Set(v)
	}
}
