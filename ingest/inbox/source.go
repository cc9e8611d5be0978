package inbox

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"golang.org/x/sync/errgroup"

	"github.com/sluicehq/sluice/ingest"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/schema"
)

// Stores resolves the store an inbox names ("" is the lake's own).
type Stores func(name string) (objstore.Bucket, error)

// Source finds, claims and maps the files of the inbox tables.
type Source struct {
	cfg    Config
	w      *ingest.Writer
	pipe   *ingest.Pipeline
	start  sync.Once // the pipeline's workers start with the first pass
	logger *slog.Logger
	m      *Metrics
	holder string // this process in the ledger's leases
	sem    chan struct{}
	notify chan struct{} // passes asked for by events

	inboxes []*tableInbox

	mu            sync.Mutex
	lastReconcile map[string]time.Time
	progress      func(Progress) // optional: called as splits finish
}

type tableInbox struct {
	table  *schema.Table
	store  objstore.Bucket
	ledger *Ledger
	source string // the chains' source name, "inbox:<table>"
}

// Metrics are the inbox series of one process, created once on its
// registerer and given to each of its sources.
type Metrics struct {
	files  *prometheus.CounterVec // table, outcome
	splits *prometheus.CounterVec // table
	bytes  *prometheus.CounterVec // table
	lines  *prometheus.CounterVec // table
	lost   *prometheus.CounterVec // table
	pruned *prometheus.CounterVec // table
}

// NewMetrics creates the series on reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	m := &Metrics{
		files: f.NewCounterVec(prometheus.CounterOpts{Name: "sluice_inbox_files_total",
			Help: "Inbox files finished, by outcome (committed, quarantined, refused, failed attempts)."}, []string{"table", "outcome"}),
		splits: f.NewCounterVec(prometheus.CounterOpts{Name: "sluice_inbox_splits_total",
			Help: "Splits whose rows are all committed."}, []string{"table"}),
		bytes: f.NewCounterVec(prometheus.CounterOpts{Name: "sluice_inbox_read_bytes_total",
			Help: "Bytes of inbox files read (compressed, as stored)."}, []string{"table"}),
		lines: f.NewCounterVec(prometheus.CounterOpts{Name: "sluice_inbox_records_total",
			Help: "Lines or rows delivered to the pipeline, dead letters included."}, []string{"table"}),
		lost: f.NewCounterVec(prometheus.CounterOpts{Name: "sluice_inbox_lost_claims_total",
			Help: "Claims taken over by another process while this one worked (a lease that ran out)."}, []string{"table"}),
		pruned: f.NewCounterVec(prometheus.CounterOpts{Name: "sluice_inbox_pruned_entries_total",
			Help: "Ledger entries forgotten: finished files gone from the inbox for batch.prune_after."}, []string{"table"}),
	}
	return m
}

// SourceName is the chains' source of an inbox table.
func SourceName(table string) string { return "inbox:" + table }

// PartitionName is the chain of one split of one version of a file: the
// file's key, the first 16 characters of its version, and the split.
func PartitionName(key, version string, split int) string {
	v := safeVersion(version)
	if len(v) > 16 {
		v = v[:16]
	}
	return key + "@" + v + "#" + strconv.Itoa(split)
}

// NewSource prepares the source for the inbox tables among tables. lakeStore
// holds the ledger; stores resolves each inbox's store. It starts nothing:
// the first pass (Pass, or Run) does. A nil m keeps the metrics
// unregistered.
func NewSource(cfg Config, tables []*schema.Table, lakeStore objstore.Bucket, stores Stores, w *ingest.Writer, logger *slog.Logger, m *Metrics) (*Source, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Parallel == 0 {
		cfg.Parallel = runtime.GOMAXPROCS(0)
	}
	var id [4]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, fmt.Errorf("inbox: holder id: %w", err)
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	s := &Source{cfg: cfg, w: w, logger: logger, m: m, sem: make(chan struct{}, cfg.Parallel), notify: make(chan struct{}, 1),
		lastReconcile: map[string]time.Time{}}
	s.holder = hex.EncodeToString(id[:])
	for _, t := range tables {
		if t.SourceKind() != schema.SourceInbox {
			continue
		}
		store, err := stores(t.Inbox.Store)
		if err != nil {
			return nil, fmt.Errorf("inbox of table %s: %w", t.Name, err)
		}
		ledger, err := NewLedger(lakeStore, t.Name)
		if err != nil {
			return nil, err
		}
		s.inboxes = append(s.inboxes, &tableInbox{table: t, store: store, ledger: ledger, source: SourceName(t.Name)})
		w.InitTableMetrics(t.Name)
		for _, o := range []string{StateCommitted, StateQuarantined, StateRefused, StateFailed} {
			s.m.files.WithLabelValues(t.Name, o)
		}
	}
	if len(s.inboxes) == 0 {
		return nil, errors.New("inbox: no table reads an inbox")
	}
	s.pipe = ingest.NewPipeline(w, s, logger)
	return s, nil
}

// Close stops the pipeline; call it after the last pass.
func (s *Source) Close() { s.pipe.Close() }

// Rewind is the pipeline asking to read a split again after a failed
// flush. A split is read to its end regardless and then checked against
// its chain (see mapSplit), which redoes it from the chain end: nothing to
// do here.
func (s *Source) Rewind(ingest.PartitionKey, lake.End) {}

// Committed is a progress hint; the ledger is written once a split is whole.
func (s *Source) Committed(ingest.PartitionKey, lake.Position) {}

// Progress is what a pass has done so far, for progress bars.
type Progress struct {
	Files, Splits, Records, Bytes int64
}

// OnProgress sets a function called (from several goroutines, serially)
// as splits and files finish.
func (s *Source) OnProgress(fn func(Progress)) { s.progress = fn }

// Stats sums up a pass.
type Stats struct {
	Claimed, Committed, Failed, Quarantined, Refused int
	Splits                                           int
	Records                                          int64
}

// Pass finds and claims files and maps them until no more can be claimed
// (or ctx ends). Files another process holds are left to it.
func (s *Source) Pass(ctx context.Context) (Stats, error) {
	s.start.Do(s.pipe.Start)
	var st Stats
	var prog Progress
	var pmu sync.Mutex
	report := func(files, splits, recs, bytes int64) {
		if s.progress == nil {
			return
		}
		pmu.Lock()
		defer pmu.Unlock()
		prog.Files += files
		prog.Splits += splits
		prog.Records += recs
		prog.Bytes += bytes
		s.progress(prog)
	}
	for _, in := range s.inboxes {
		for round := 0; ctx.Err() == nil; round++ {
			claimed, refused, err := s.claim(ctx, in, max(4, 2*s.cfg.Parallel), round == 0)
			st.Refused += refused
			if err != nil {
				return st, err
			}
			if len(claimed) == 0 {
				break
			}
			st.Claimed += len(claimed)
			var wg sync.WaitGroup
			var smu sync.Mutex
			for _, f := range claimed {
				wg.Add(1)
				go func() {
					defer wg.Done()
					outcome, splits, recs := s.processFile(ctx, f, report)
					smu.Lock()
					defer smu.Unlock()
					st.Splits += splits
					st.Records += recs
					switch outcome {
					case StateCommitted:
						st.Committed++
					case StateQuarantined:
						st.Quarantined++
					case StateFailed:
						st.Failed++
					}
				}()
			}
			wg.Wait()
		}
	}
	return st, ctx.Err()
}

// fileWork is a claimed file: its entry and the store version of it this
// process last wrote (the fence for its next update).
type fileWork struct {
	in  *tableInbox
	mu  sync.Mutex
	e   Entry
	tag string
}

// update changes the entry if this process still holds it.
func (f *fileWork) update(ctx context.Context, mutate func(*Entry)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	next := f.e
	next.Splits = slices.Clone(f.e.Splits)
	mutate(&next)
	tag, err := f.in.ledger.Update(ctx, next, f.tag)
	if err != nil {
		return err
	}
	f.e, f.tag = next, tag
	return nil
}

func (f *fileWork) entry() Entry {
	f.mu.Lock()
	defer f.mu.Unlock()
	e := f.e
	e.Splits = slices.Clone(f.e.Splits)
	return e
}

// version is the file's version as the ledger keys it: the ETag, or size
// and modification time on a store without ETags (the local directory).
func version(a objstore.ObjectAttrs) string {
	if a.ETag != "" {
		return a.ETag
	}
	return fmt.Sprintf("s%d-t%d", a.Size, a.LastModified.UnixNano())
}

// claim returns up to limit files this process now holds: first files
// left open (a dead holder's, a failed attempt's), then new ones after the
// cursor, then, when due, new ones the full reconciliation finds.
func (s *Source) claim(ctx context.Context, in *tableInbox, limit int, reconcile bool) ([]*fileWork, int, error) {
	var out []*fileWork
	refused := 0
	now := time.Now()
	err := in.ledger.Open(ctx, func(key, ver string) error {
		if len(out) >= limit {
			return errStop
		}
		f, err := s.reclaim(ctx, in, key, ver, now)
		if err != nil {
			s.logger.Warn("inbox: look at an open file", "table", in.table.Name, "key", key, "err", err)
			return nil
		}
		if f != nil {
			out = append(out, f)
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return nil, 0, err
	}

	// Incremental: keys after the cursor, in order; the cursor moves over
	// every key that has an entry (or is ignored) once we are done.
	after, err := in.ledger.Cursor(ctx)
	if err != nil {
		return nil, 0, err
	}
	last, listed, blocked := "", 0, false
	err = objstore.IterAfter(ctx, in.store, in.table.Inbox.Prefix, after, func(a objstore.ObjectAttrs) error {
		if len(out) >= limit || listed >= s.cfg.ListPage {
			return errStop
		}
		listed++
		if s.unsettled(a) {
			// Maybe still being written: the cursor stops before it, so
			// the next pass lists it again.
			blocked = true
			return nil
		}
		f, ref, err := s.consider(ctx, in, a, false)
		if err != nil {
			return err
		}
		refused += ref
		if f != nil {
			out = append(out, f)
		}
		if !blocked {
			last = a.Key
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return nil, refused, fmt.Errorf("inbox %s: list: %w", in.table.Name, err)
	}
	if last != "" {
		if err := in.ledger.Advance(ctx, last); err != nil {
			return nil, refused, err
		}
	}

	if reconcile && len(out) < limit && s.reconcileDue(in.table.Name) {
		n, ref, err := s.reconcile(ctx, in, limit-len(out), &out)
		refused += ref
		if err != nil {
			return nil, refused, err
		}
		if n == 0 {
			s.markReconciled(in.table.Name)
		}
	}
	return out, refused, nil
}

var errStop = errors.New("stop")

// unsettled reports whether a file changed less than batch.settle ago.
func (s *Source) unsettled(a objstore.ObjectAttrs) bool {
	return s.cfg.Settle > 0 && time.Since(a.LastModified) < s.cfg.Settle
}

func (s *Source) reconcileDue(table string) bool {
	if s.cfg.ReconcileEvery < 0 {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return time.Since(s.lastReconcile[table]) >= s.cfg.ReconcileEvery
}

func (s *Source) markReconciled(table string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastReconcile[table] = time.Now()
}

// consider looks at one listed file and claims it if it is new. Ignored
// and empty files, and files with an entry, need nothing.
func (s *Source) consider(ctx context.Context, in *tableInbox, a objstore.ObjectAttrs, known bool) (*fileWork, int, error) {
	if Ignored(a.Key) || a.Size == 0 {
		return nil, 0, nil
	}
	ver := version(a)
	var others []string
	if !known {
		versions, err := in.ledger.Versions(ctx, a.Key)
		if err != nil {
			return nil, 0, err
		}
		if slices.Contains(versions, safeVersion(ver)) {
			return nil, 0, nil
		}
		others = versions
	}
	e := Entry{Key: a.Key, Version: ver, Size: a.Size, Format: in.table.Inbox.Format, State: StateClaimed,
		Epoch: 1, Holder: s.holder, LeaseUntil: time.Now().Add(s.cfg.Lease)}
	if len(others) > 0 {
		e.Replaces = others[len(others)-1]
		if s.cfg.Replaced != "version" {
			e.State, e.Holder, e.LeaseUntil = StateRefused, s.holder, time.Time{}
			e.Error = fmt.Sprintf("the key was ingested before as version %s; replaced files are refused (batch.replaced: refuse)", e.Replaces)
			if _, created, err := in.ledger.Create(ctx, e); err != nil || !created {
				return nil, 0, err
			}
			s.m.files.WithLabelValues(in.table.Name, StateRefused).Inc()
			s.logger.Error("inbox: a file replaced after it was ingested is refused", "table", in.table.Name, "key", a.Key,
				"version", ver, "ingested_version", e.Replaces)
			return nil, 1, nil
		}
	}
	tag, created, err := in.ledger.Create(ctx, e)
	if err != nil || !created {
		return nil, 0, err
	}
	return &fileWork{in: in, e: e, tag: tag}, 0, nil
}

// maxPrunePerPass bounds the entries one reconciliation looks at for
// pruning (and holds in memory); the rest wait for the next.
const maxPrunePerPass = 10_000

// prune forgets a finished file that is gone from the inbox (deleted or
// archived) once batch.prune_after has passed since it finished, so the
// ledger does not grow with files that no longer exist. An entry of a file
// still in the inbox is never pruned, whatever its version.
func (s *Source) prune(ctx context.Context, in *tableInbox, key, ver string) {
	if s.cfg.PruneAfter < 0 {
		return
	}
	e, _, found, err := in.ledger.Get(ctx, key, ver)
	if err != nil || !found || !e.Done() || time.Since(e.UpdatedAt) < s.cfg.PruneAfter {
		return
	}
	if err := in.ledger.Forget(ctx, key, ver); err != nil {
		s.logger.Warn("inbox: prune the entry of a file gone from the inbox", "table", in.table.Name, "key", key, "err", err)
		return
	}
	s.m.pruned.WithLabelValues(in.table.Name).Inc()
}

// reclaim looks at a file left open and claims it if its holder's lease
// ran out, or its last attempt failed long enough ago.
func (s *Source) reclaim(ctx context.Context, in *tableInbox, key, ver string, now time.Time) (*fileWork, error) {
	e, tag, found, err := in.ledger.Get(ctx, key, ver)
	if err != nil {
		return nil, err
	}
	if !found {
		// A marker whose entry was never written (a crash in between):
		// claim the file if it is still that version.
		a, err := in.store.Attributes(ctx, key)
		if objstore.IsNotExist(err) || err == nil && safeVersion(version(a)) != ver {
			return nil, in.ledger.Close(ctx, key, ver)
		}
		if err != nil {
			return nil, err
		}
		f, _, err := s.consider(ctx, in, a, false)
		return f, err
	}
	if e.Done() {
		return nil, in.ledger.Close(ctx, key, ver)
	}
	switch {
	case e.State == StateClaimed && now.Before(e.LeaseUntil):
		return nil, nil // its holder is at work
	case e.State == StateFailed && now.Before(e.UpdatedAt.Add(backoff(e.Attempts))):
		return nil, nil
	}
	f := &fileWork{in: in, e: e, tag: tag}
	quarantine := e.Attempts >= s.cfg.MaxAttempts
	err = f.update(ctx, func(e *Entry) {
		e.Epoch++
		e.Holder = s.holder
		if quarantine {
			e.State, e.LeaseUntil = StateQuarantined, time.Time{}
			e.Error = fmt.Sprintf("gave up after %d attempts; last error: %s", e.Attempts, e.Error)
			return
		}
		e.State, e.LeaseUntil = StateClaimed, time.Now().Add(s.cfg.Lease)
	})
	if errors.Is(err, ErrLostClaim) {
		return nil, nil // another process took it first
	}
	if err != nil {
		return nil, err
	}
	if quarantine {
		s.m.files.WithLabelValues(in.table.Name, StateQuarantined).Inc()
		s.logger.Error("inbox: file quarantined", "table", in.table.Name, "key", key, "err", f.e.Error)
		return nil, in.ledger.Close(ctx, key, ver)
	}
	return f, nil
}

func backoff(attempts int) time.Duration {
	return min(time.Duration(1<<min(attempts, 8))*time.Second, 5*time.Minute)
}

// reconcile merges a full listing of the inbox with the ledger's entries
// (both in key order, so memory stays constant) and claims up to limit
// files that have no entry for their version: files whose keys sort before
// the cursor, and replaced files. It reports how many it found.
func (s *Source) reconcile(ctx context.Context, in *tableInbox, limit int, out *[]*fileWork) (int, int, error) {
	ls := streamLedger(ctx, in.ledger)
	found, refused := 0, 0
	var gone []ledgerKV
	err := in.store.Iter(ctx, in.table.Inbox.Prefix, func(a objstore.ObjectAttrs) error {
		if Ignored(a.Key) || a.Size == 0 {
			return nil
		}
		var versions []string
		for ls.have && ls.cur.key < a.Key {
			if len(gone) < maxPrunePerPass {
				gone = append(gone, ls.cur) // an entry of a file no longer in the inbox
			}
			ls.advance()
		}
		for ls.have && ls.cur.key == a.Key {
			versions = append(versions, ls.cur.ver)
			ls.advance()
		}
		if slices.Contains(versions, safeVersion(version(a))) || s.unsettled(a) {
			return nil
		}
		found++
		if len(*out) >= limit {
			return errStop
		}
		f, ref, err := s.consider(ctx, in, a, false)
		if err != nil {
			return err
		}
		refused += ref
		if f != nil {
			*out = append(*out, f)
		}
		return nil
	})
	if err == nil {
		for ls.have && len(gone) < maxPrunePerPass { // the entries after the inbox's last key
			gone = append(gone, ls.cur)
			ls.advance()
		}
	}
	lerr := ls.stop()
	if err != nil && !errors.Is(err, errStop) {
		return found, refused, fmt.Errorf("inbox %s: reconcile: %w", in.table.Name, err)
	}
	if lerr != nil && !errors.Is(lerr, context.Canceled) && !errors.Is(err, errStop) {
		return found, refused, fmt.Errorf("inbox %s: reconcile: list ledger: %w", in.table.Name, lerr)
	}
	if err == nil {
		for _, g := range gone {
			s.prune(ctx, in, g.key, g.ver)
		}
	}
	return found, refused, nil
}

// ledgerKV is a ledger entry's file key and version.
type ledgerKV struct{ key, ver string }

// ledgerStream yields a ledger's entries in key order, listed by a
// goroutine, so that reconcile merges them with the inbox's listing in
// constant memory. cur is the current entry while have is true.
type ledgerStream struct {
	entries chan ledgerKV
	errc    chan error
	cancel  context.CancelFunc
	cur     ledgerKV
	have    bool
}

// streamLedger starts listing l and moves to its first entry.
func streamLedger(ctx context.Context, l *Ledger) *ledgerStream {
	listCtx, cancel := context.WithCancel(ctx)
	ls := &ledgerStream{entries: make(chan ledgerKV, 1024), errc: make(chan error, 1), cancel: cancel}
	go func() {
		defer close(ls.entries)
		ls.errc <- l.Each(listCtx, func(key, ver string) error {
			select {
			case ls.entries <- ledgerKV{key, ver}:
				return nil
			case <-listCtx.Done():
				return listCtx.Err()
			}
		})
	}()
	ls.advance()
	return ls
}

// advance moves to the next entry; it is false after the last.
func (ls *ledgerStream) advance() bool {
	ls.cur, ls.have = <-ls.entries
	return ls.have
}

// stop ends the listing and returns its error (context.Canceled when it
// was stopped before its end).
func (ls *ledgerStream) stop() error {
	ls.cancel()
	for range ls.entries {
		// drain, so the lister ends
	}
	return <-ls.errc
}

// ErrCorrupt marks a file that cannot be read as its format: retrying does
// not help, so it is quarantined.
var ErrCorrupt = errors.New("corrupt file")

// processFile maps a claimed file's splits and finishes its entry. It
// returns the outcome, splits done and records delivered.
func (s *Source) processFile(ctx context.Context, f *fileWork, report func(files, splits, recs, bytes int64)) (string, int, int64) {
	in := f.in
	table := in.table.Name
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lost := false
	var hb sync.WaitGroup
	hb.Add(1)
	go func() {
		defer hb.Done()
		tick := time.NewTicker(s.cfg.Lease / 3)
		defer tick.Stop()
		for {
			select {
			case <-fctx.Done():
				return
			case <-tick.C:
				err := f.update(fctx, func(e *Entry) { e.LeaseUntil = time.Now().Add(s.cfg.Lease) })
				if errors.Is(err, ErrLostClaim) {
					lost = true
					s.m.lost.WithLabelValues(table).Inc()
					s.logger.Warn("inbox: claim lost; leaving the file to its new holder", "table", table, "key", f.e.Key)
					cancel()
					return
				}
				if err != nil && fctx.Err() == nil {
					s.logger.Warn("inbox: renew lease", "table", table, "key", f.e.Key, "err", err)
				}
			}
		}
	}()
	splits, recs, err := s.mapFile(fctx, f, report)
	cancel()
	hb.Wait()
	e := f.entry()
	// The final update must happen even when ctx ended (shutdown): give it
	// a short time of its own.
	uctx, ucancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer ucancel()
	switch {
	case lost:
		return StateFailed, splits, recs
	case errors.Is(err, ErrLostClaim):
		// A split's ledger update found the file taken over before the
		// lease renewal did: the same lost claim, not a failed attempt
		// (the new holder goes on with it; nothing here is retried).
		s.m.lost.WithLabelValues(table).Inc()
		s.logger.Warn("inbox: claim lost; leaving the file to its new holder", "table", table, "key", e.Key)
		return StateFailed, splits, recs
	case err == nil:
		if err := f.update(uctx, func(e *Entry) { e.State, e.LeaseUntil, e.Error = StateCommitted, time.Time{}, "" }); err != nil {
			s.logger.Warn("inbox: mark committed", "table", table, "key", e.Key, "err", err)
			return StateFailed, splits, recs
		}
		s.m.files.WithLabelValues(table, StateCommitted).Inc()
		report(1, 0, 0, 0)
		if err := in.ledger.Close(uctx, e.Key, e.Version); err != nil {
			s.logger.Warn("inbox: close entry", "table", table, "key", e.Key, "err", err)
		}
		s.after(uctx, in, e)
		return StateCommitted, splits, recs
	case ctx.Err() != nil:
		// Shutdown: give the file back at once rather than when the lease ends.
		_ = f.update(uctx, func(e *Entry) { e.LeaseUntil = time.Now() })
		return StateFailed, splits, recs
	case errors.Is(err, ErrCorrupt):
		_ = f.update(uctx, func(e *Entry) {
			e.State, e.LeaseUntil, e.Error = StateQuarantined, time.Time{}, err.Error()
			e.Attempts++
		})
		_ = in.ledger.Close(uctx, e.Key, e.Version)
		s.m.files.WithLabelValues(table, StateQuarantined).Inc()
		s.logger.Error("inbox: file quarantined", "table", table, "key", e.Key, "err", err)
		return StateQuarantined, splits, recs
	default:
		_ = f.update(uctx, func(e *Entry) {
			e.State, e.LeaseUntil, e.Error = StateFailed, time.Time{}, err.Error()
			e.Attempts++
		})
		s.m.files.WithLabelValues(table, StateFailed).Inc()
		s.logger.Warn("inbox: file failed; it will be retried", "table", table, "key", e.Key, "attempts", e.Attempts+1, "err", err)
		return StateFailed, splits, recs
	}
}

// after archives, deletes or keeps a committed file. Its entry says
// committed already, so a failure here never causes a re-ingest.
func (s *Source) after(ctx context.Context, in *tableInbox, e Entry) {
	if s.cfg.After == "keep" {
		return
	}
	if s.cfg.After == "archive" {
		rc, err := in.store.Get(ctx, e.Key)
		if err == nil {
			err = in.store.Put(ctx, s.cfg.ArchivePrefix+e.Key, rc, e.Size)
			rc.Close()
		}
		if err != nil {
			s.logger.Warn("inbox: archive a committed file (kept in place)", "key", e.Key, "err", err)
			return
		}
	}
	if err := in.store.Delete(ctx, e.Key); err != nil {
		s.logger.Warn("inbox: delete a committed file", "key", e.Key, "err", err)
	}
}

// mapFile plans the file's splits (once: the plan is kept in the entry)
// and maps those not done yet, in parallel.
func (s *Source) mapFile(ctx context.Context, f *fileWork, report func(files, splits, recs, bytes int64)) (int, int64, error) {
	e := f.entry()
	if e.Splits == nil {
		comp, splits, err := s.plan(ctx, f.in, e)
		if err != nil {
			return 0, 0, err
		}
		if err := f.update(ctx, func(e *Entry) { e.Compression, e.Splits = comp, splits }); err != nil {
			return 0, 0, err
		}
		e = f.entry()
	}
	g, gctx := errgroup.WithContext(ctx)
	var done int
	var recs int64
	var mu sync.Mutex
	for _, sp := range e.Splits {
		if sp.Done {
			continue
		}
		g.Go(func() error {
			select {
			case s.sem <- struct{}{}:
			case <-gctx.Done():
				return gctx.Err()
			}
			defer func() { <-s.sem }()
			lines, delivered, err := s.mapSplit(gctx, f.in, e, sp)
			if err != nil {
				return fmt.Errorf("split %d of %s: %w", sp.Index, e.Key, err)
			}
			if err := f.update(gctx, func(e *Entry) {
				e.Splits[sp.Index].Done, e.Splits[sp.Index].Lines = true, lines
				e.Records += delivered
			}); err != nil {
				return err
			}
			s.m.splits.WithLabelValues(f.in.table.Name).Inc()
			s.m.lines.WithLabelValues(f.in.table.Name).Add(float64(delivered))
			n := SplitSize(e, sp)
			s.m.bytes.WithLabelValues(f.in.table.Name).Add(float64(n))
			report(0, 1, delivered, n)
			mu.Lock()
			done++
			recs += delivered
			mu.Unlock()
			return nil
		})
	}
	err := g.Wait()
	return done, recs, err
}

// SplitSize is the bytes of the stored file a split stands for: its byte
// range of an uncompressed text file; the whole file, counted with split
// 0, for compressed and Parquet files (whose splits are not byte ranges).
func SplitSize(e Entry, sp Split) int64 {
	if e.Format == "parquet" || e.Compression != CompNone {
		if sp.Index == 0 {
			return e.Size
		}
		return 0
	}
	return sp.End - sp.Start
}

// plan resolves the file's compression and cuts it into splits.
func (s *Source) plan(ctx context.Context, in *tableInbox, e Entry) (string, []Split, error) {
	return Plan(ctx, in.store, in.table, e, s.cfg.SplitBytes)
}

// mapSplit delivers the split's lines from where its chain ends, flushes
// them, and checks that the chain now covers the whole split; a flush that
// failed (the pipeline dropped what followed it) is redone from the chain
// end. It returns the split's line count and the records delivered.
func (s *Source) mapSplit(ctx context.Context, in *tableInbox, e Entry, sp Split) (int64, int64, error) {
	key := ingest.PartitionKey{Table: in.table.Name, Source: in.source, Partition: PartitionName(e.Key, e.Version, sp.Index)}
	var delivered int64
	for attempt := 0; ; attempt++ {
		end, err := s.pipe.Open(ctx, in.table, key, ingest.StartAt(lake.PositionOf(0), e.Version))
		if err != nil {
			return 0, 0, err
		}
		from, _ := end.Next.Int64()
		lines, expect, n, rerr := s.deliverSplit(ctx, in, e, sp, key, from)
		delivered += n
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.w.FlushTimeout())
		s.pipe.Release(rctx, []ingest.PartitionKey{key}, rerr == nil)
		cancel()
		if rerr != nil {
			return 0, 0, rerr
		}
		if expect <= from {
			return lines, delivered, nil
		}
		got, found, err := s.w.CommitLog().Resume(ctx, key.Table, key.Source, key.Partition)
		if err != nil {
			return 0, 0, err
		}
		next, _ := got.Next.Int64()
		if found && next >= expect {
			return lines, delivered, nil
		}
		if attempt >= 4 || ctx.Err() != nil {
			return 0, 0, fmt.Errorf("the chain ends at line %d, the split at %d, after %d attempts", next, expect, attempt+1)
		}
		s.logger.Warn("inbox: split not fully committed; mapping it again from its chain end", "partition", key.String(), "chain_end", next, "split_end", expect)
	}
}

// source errors wrap the raw reader's, so that a failing decompressor over
// a healthy stream is told apart (corrupt file) from a failing stream.
type trackingReader struct {
	r   io.Reader
	err error
}

func (t *trackingReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		t.err = err
	}
	return n, err
}

// deliverSplit reads the split and delivers its lines with positions at
// or after from. It returns the split's line count, the position after its
// last non-blank line (what the chain must reach), and how many records it
// delivered.
func (s *Source) deliverSplit(ctx context.Context, in *tableInbox, e Entry, sp Split, key ingest.PartitionKey, from int64) (lines, expect, delivered int64, err error) {
	const batchRecords, arenaBytes = 2048, 1 << 20
	recs := s.pipe.Buffer(batchRecords)[:0]
	arena := make([]byte, 0, arenaBytes)
	flush := func() error {
		if len(recs) == 0 {
			return nil
		}
		err := s.pipe.Deliver(ctx, key, recs, 0)
		delivered += int64(len(recs))
		recs = s.pipe.Buffer(batchRecords)[:0]
		arena = make([]byte, 0, arenaBytes)
		return err
	}
	lines, expect, err = EachRecord(ctx, in.store, in.table, e, sp, func(line []byte, pos int64, at ingest.Location) error {
		if pos < from {
			return nil // committed before
		}
		if len(arena)+len(line) > cap(arena) || len(recs) == cap(recs) {
			if err := flush(); err != nil {
				return err
			}
		}
		var v []byte
		if len(line) > arenaBytes/4 {
			v = append([]byte(nil), line...)
		} else {
			at := len(arena)
			arena = append(arena, line...)
			v = arena[at:len(arena):len(arena)]
		}
		recs = append(recs, ingest.Record{Value: v, Pos: lake.PositionOf(pos), At: at})
		return nil
	})
	if err != nil {
		return 0, 0, delivered, err
	}
	if err := flush(); err != nil {
		return 0, 0, delivered, err
	}
	return lines, expect, delivered, nil
}

// Plan resolves a file's compression (by its first bytes, for "auto")
// and cuts it into splits; e needs Key, Size and Format.
func Plan(ctx context.Context, store objstore.BucketReader, t *schema.Table, e Entry, splitBytes int64) (string, []Split, error) {
	rc, err := store.GetRange(ctx, e.Key, 0, min(e.Size, 4))
	if err != nil {
		return "", nil, fmt.Errorf("read %s: %w", e.Key, err)
	}
	head, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return "", nil, fmt.Errorf("read %s: %w", e.Key, err)
	}
	if e.Format == "parquet" {
		splits, err := planParquet(ctx, store, e)
		return CompNone, splits, err
	}
	comp := detectCompression(t.Inbox.Compression, e.Key, head)
	splits := PlanSplits(e.Format, comp, e.Size, splitBytes)
	if e.Format == "csv" && len(splits) > 1 {
		// A byte range may start inside a quoted field that holds a
		// newline, and only a read from the file's start can tell.
		splits, err := planCSVSplits(ctx, store, t, e, splitBytes)
		return comp, splits, err
	}
	return comp, splits, nil
}

// maxRecordBytes is the table's record size limit, which the line reader
// cuts at.
func maxRecordBytes(t *schema.Table) int {
	if t.MaxRecordBytes > 0 {
		return t.MaxRecordBytes
	}
	return schema.DefaultMaxRecordBytes
}

// planCSVSplits cuts an uncompressed CSV file at record starts about
// splitBytes apart. It reads the whole file once, with the reader that
// EachRecord uses, so that the splits' readers and the plan agree on
// where every record (which may span lines) begins.
func planCSVSplits(ctx context.Context, store objstore.BucketReader, t *schema.Table, e Entry, splitBytes int64) ([]Split, error) {
	rc, err := store.GetRange(ctx, e.Key, 0, -1)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", e.Key, err)
	}
	defer rc.Close()
	raw := &trackingReader{r: rc}
	lr, err := newLineReader(raw, 0, -1, maxRecordBytes(t))
	if err != nil {
		return nil, readErr(raw, e.Key, err)
	}
	lr.quoted = true
	starts := []int64{0}
	cut := splitBytes
	for n := 0; ; n++ {
		if n%4096 == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if _, _, err := lr.next(); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, readErr(raw, e.Key, err)
		}
		if lr.at >= cut {
			// The same grid as PlanSplits, so that a file whose records
			// are all one line splits where it always did.
			starts = append(starts, lr.at)
			cut = (lr.at/splitBytes + 1) * splitBytes
		}
	}
	splits := make([]Split, len(starts))
	for i, start := range starts {
		end := e.Size
		if i+1 < len(starts) {
			end = starts[i+1]
		}
		splits[i] = Split{Index: i, Start: start, End: end}
	}
	return splits, nil
}

// EachRecord calls fn with every non-blank line (or Parquet row, as a JSON
// object) of a split, its position and its place in the file, in order;
// value is valid during the call only. It returns the split's position count and the position
// after its last record. e needs Key, Size, Format and Compression (as
// Plan resolved it). A file that cannot be read as its format gives an
// error wrapping ErrCorrupt.
func EachRecord(ctx context.Context, store objstore.BucketReader, t *schema.Table, e Entry, sp Split, fn func(value []byte, pos int64, at ingest.Location) error) (lines, expect int64, err error) {
	if e.Format == "parquet" {
		return eachParquet(ctx, store, t, e, sp, fn)
	}
	start := sp.Start
	if start > 0 {
		start-- // the byte before: where the split's first line begins
	}
	rc, err := store.GetRange(ctx, e.Key, start, -1)
	if err != nil {
		return 0, 0, fmt.Errorf("read %s: %w", e.Key, err)
	}
	defer rc.Close()
	raw := &trackingReader{r: rc}
	dr, err := decompress(raw, e.Compression)
	if err != nil {
		return 0, 0, fmt.Errorf("%w: %s: %v", ErrCorrupt, e.Key, err)
	}
	defer dr.Close()
	end := sp.End
	if e.Compression != CompNone {
		end = -1
	}
	lr, err := newLineReader(dr, sp.Start, end, maxRecordBytes(t))
	if err != nil {
		return 0, 0, readErr(raw, e.Key, err)
	}
	lr.quoted = e.Format == "csv"
	var conv *csvConverter
	if e.Format == "csv" {
		header, err := csvHeader(ctx, store, e, sp, lr)
		if err != nil {
			return 0, 0, err
		}
		if conv, err = newCSVConverter(t, header); err != nil {
			return 0, 0, fmt.Errorf("%w: %s: %v", ErrCorrupt, e.Key, err)
		}
		if sp.Index == 0 {
			lines = 1 // the header is line 0 of split 0
		}
	}
	for {
		line, pos, err := lr.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, 0, readErr(raw, e.Key, err)
		}
		if conv != nil && sp.Index == 0 {
			pos++ // the header was read as line 0
		}
		lines = pos + 1
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		expect = pos + 1
		if conv != nil {
			line = conv.convert(line)
		}
		at := ingest.Location{File: e.Key, Offset: lr.at, Row: -1}
		if sp.Index == 0 {
			// Split 0 reads from the file's first line (the CSV header
			// included); a CSV record may span lines, so this is the line
			// it starts on, not its position.
			at.Line = lr.atLine + 1
		}
		if err := fn(line, pos, at); err != nil {
			return 0, 0, err
		}
	}
	return lines, expect, nil
}

func readErr(raw *trackingReader, key string, err error) error {
	if raw.err == nil {
		return fmt.Errorf("%w: %s: %v", ErrCorrupt, key, err)
	}
	return fmt.Errorf("read %s: %w", key, err)
}

// csvHeader returns the CSV header: the first line of split 0 (consumed
// from lr), or read from the file's start for later splits.
func csvHeader(ctx context.Context, store objstore.BucketReader, e Entry, sp Split, lr *lineReader) ([]byte, error) {
	if sp.Index == 0 {
		line, _, err := lr.next()
		if err != nil {
			return nil, fmt.Errorf("%w: %s: no CSV header: %v", ErrCorrupt, e.Key, err)
		}
		lr.pos = 0 // positions of the data lines are counted by deliverSplit
		return append([]byte(nil), line...), nil
	}
	rc, err := store.GetRange(ctx, e.Key, 0, min(e.Size, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", e.Key, err)
	}
	defer rc.Close()
	hr, err := newLineReader(rc, 0, -1, 1<<20)
	if err != nil {
		return nil, err
	}
	hr.quoted = true
	line, _, err := hr.next()
	if err != nil {
		return nil, fmt.Errorf("%w: %s: no CSV header: %v", ErrCorrupt, e.Key, err)
	}
	return append([]byte(nil), line...), nil
}
