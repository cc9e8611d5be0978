package ops

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/sluicehq/sluice/aggregate"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/schema"
)

// Where a new cursor or rule state starts.
const (
	StartEnd       = "end"       // at the committed data's end when the rule is first seen
	StartBeginning = "beginning" // at the start of the committed data
)

// Config of the ops service.
type Config struct {
	// Interval between evaluations of a table's rules (default 5s).
	Interval time.Duration `yaml:"interval"`
	// Lease is how long one evaluator works on a table before another may
	// take over (default 30s). Firings are deduplicated by their id in the
	// log whatever the lease does; the lease only keeps evaluators from
	// doing the same work.
	Lease time.Duration `yaml:"lease"`
	// Start says where a table's evaluation starts the first time:
	// "end" (default: only data committed from now on fires) or "beginning".
	Start string `yaml:"start"`
	// IdleTimeout is the aggregator's: a partition silent this long stops
	// holding the watermark back (default 5m).
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// Workers is how many deliveries run at once (default 8).
	Workers int `yaml:"workers"`
	// Rescan is how often the log is read for pending firings this process
	// did not log itself (another evaluator's, or redelivered) (default 1m).
	Rescan time.Duration `yaml:"rescan"`
}

// WithDefaults fills in zero fields.
func (c Config) WithDefaults() Config {
	if c.Interval == 0 {
		c.Interval = 5 * time.Second
	}
	if c.Lease == 0 {
		c.Lease = 30 * time.Second
	}
	if c.Start == "" {
		c.Start = StartEnd
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = aggregate.DefaultIdleTimeout
	}
	if c.Workers == 0 {
		c.Workers = 8
	}
	if c.Rescan == 0 {
		c.Rescan = time.Minute
	}
	return c
}

// Validate reports a bad setting.
func (c Config) Validate() error {
	switch {
	case c.Start != StartEnd && c.Start != StartBeginning:
		return fmt.Errorf("ops.start %q: want end or beginning", c.Start)
	case c.Interval < 0 || c.Lease < 0 || c.Workers < 0 || c.Rescan < 0:
		return errors.New("ops: interval, lease, workers and rescan must be positive")
	case c.Lease < 2*c.Interval:
		return fmt.Errorf("ops.lease %s must be at least twice ops.interval %s", c.Lease, c.Interval)
	}
	return nil
}

// Service evaluates the rules of its tables and delivers their firings.
// Any number of services may run against one lake: a lease per table lets
// one work on it at a time, and firing ids in the log keep every firing
// logged once even when two overlap.
type Service struct {
	cfg       Config
	rs        *RuleSet
	tables    map[string]*schema.Table
	lakeB     objstore.ConditionalBucket
	summaries objstore.BucketReader
	commits   *lake.CommitLog
	log       *ActionLog
	locker    *aggregate.BucketLocker
	d         *Deliverer
	m         *Metrics
	logger    *slog.Logger
	now       func() time.Time

	mu       sync.Mutex
	queue    map[string]queued // firing id -> where and when
	rescanAt map[string]time.Time
}

type queued struct {
	table, rule string
	due         time.Time
}

// NewService returns a service over the lake bucket (commit chains, raw
// objects, the action log, cursors and rule states) and the summary store
// (nil when no window rule exists).
func NewService(cfg Config, rs *RuleSet, tables []*schema.Table, lakeB objstore.ConditionalBucket, summaries objstore.BucketReader,
	owner string, logger *slog.Logger, m *Metrics) (*Service, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	s := &Service{cfg: cfg, rs: rs, tables: map[string]*schema.Table{}, lakeB: lakeB, summaries: summaries,
		commits: lake.NewCommitLog(lakeB).WithLogger(logger), log: NewActionLog(lakeB),
		locker: aggregate.NewBucketLocker(lakeB, cfg.Lease, owner), m: m, logger: logger, now: time.Now,
		queue: map[string]queued{}, rescanAt: map[string]time.Time{}}
	s.d = NewDeliverer(s.log, rs, logger, m)
	for _, t := range tables {
		s.tables[t.Name] = t
	}
	for _, r := range rs.Rules {
		if s.tables[r.Table] == nil {
			return nil, fmt.Errorf("ops: rule %s: unknown table %s", r.Name, r.Table)
		}
		if r.Kind == KindWindow && summaries == nil {
			return nil, fmt.Errorf("ops: window rule %s needs a summary store", r.Name)
		}
	}
	return s, nil
}

// Log is the service's action log.
func (s *Service) Log() *ActionLog { return s.log }

// Deliverer is the service's deliverer (for redeliveries).
func (s *Service) Deliverer() *Deliverer { return s.d }

// Close releases the Kafka clients.
func (s *Service) Close() { s.d.Close() }

// rulesByTable groups the rules, in file order.
func (s *Service) rulesByTable() (order []string, by map[string][]*Rule) {
	by = map[string][]*Rule{}
	for _, r := range s.rs.Rules {
		if by[r.Table] == nil {
			order = append(order, r.Table)
		}
		by[r.Table] = append(by[r.Table], r)
	}
	return order, by
}

// Run evaluates and delivers until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	order, by := s.rulesByTable()
	tick := time.NewTicker(s.cfg.Interval)
	defer tick.Stop()
	for {
		for _, table := range order {
			err := s.RunTable(ctx, table, by[table])
			switch {
			case err == nil || ctx.Err() != nil:
			case errors.Is(err, context.DeadlineExceeded), errors.Is(err, objstore.ErrChanged):
				// The lease ran out mid-run, or another evaluator moved on
				// first: the next holder (or round) continues from the log.
				s.logger.Debug("ops: evaluation cut short", "table", table, "err", err)
			default:
				s.logger.Error("ops: evaluating rules", "table", table, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// RunTable takes (or keeps) the table's lease and, while it holds it,
// evaluates the table's rules once and makes the delivery attempts that
// are due. Without the lease it does nothing.
func (s *Service) RunTable(ctx context.Context, table string, rules []*Rule) error {
	key := "ops-" + table
	deadline, ok := s.locker.Deadline(key)
	if !ok {
		if _, held := s.locker.Held(key); !held {
			if _, err := s.locker.Lock(ctx, key); err != nil {
				if errors.Is(err, aggregate.ErrLocked) {
					return nil
				}
				return err
			}
			s.mu.Lock()
			delete(s.rescanAt, table) // a new holder reads what is pending first
			s.mu.Unlock()
		}
		if _, err := s.locker.Wait(ctx, key); err != nil {
			if errors.Is(err, aggregate.ErrLocked) {
				return nil
			}
			return err
		}
		if deadline, ok = s.locker.Deadline(key); !ok {
			return nil
		}
	}
	// Stop a little before the lease ends, so the next holder starts on
	// what this one finished; too little left is not worth starting.
	left := deadline.Sub(s.now()) - s.cfg.Lease/10
	if left < s.cfg.Lease/10 {
		return nil
	}
	ctx, cancel := context.WithDeadline(ctx, time.Now().Add(left))
	defer cancel()
	return s.evaluate(ctx, table, rules)
}

// EvaluateOnce evaluates the table's rules and delivers what is due,
// without a lease (tests and one-shot runs).
func (s *Service) EvaluateOnce(ctx context.Context, table string) error {
	_, by := s.rulesByTable()
	return s.evaluate(ctx, table, by[table])
}

func (s *Service) evaluate(ctx context.Context, table string, rules []*Rule) error {
	t := s.tables[table]
	if err := s.rescan(ctx, table); err != nil {
		return err
	}
	var events, windows []*Rule
	for _, r := range rules {
		if r.Kind == KindEvent {
			events = append(events, r)
		} else {
			windows = append(windows, r)
		}
	}
	var errs []error
	if len(events) > 0 {
		errs = append(errs, s.evalEvents(ctx, t, events))
	}
	for _, r := range windows {
		errs = append(errs, s.evalWindows(ctx, t, r))
	}
	errs = append(errs, s.deliverDue(ctx, table))
	return errors.Join(errs...)
}

// rescan queues the table's pending firings from the log, at most every
// cfg.Rescan.
func (s *Service) rescan(ctx context.Context, table string) error {
	s.mu.Lock()
	due := !s.now().Before(s.rescanAt[table])
	s.mu.Unlock()
	if !due {
		return nil
	}
	pending, err := s.log.Pending(ctx, table)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range pending {
		if _, ok := s.queue[p.ID]; !ok {
			s.queue[p.ID] = queued{table: p.Table, rule: p.Rule}
		}
	}
	s.rescanAt[table] = s.now().Add(s.cfg.Rescan)
	return nil
}

// record logs a firing (once: a firing logged before is not logged again)
// and queues its delivery. A firing logged before but still pending (the
// process died between log and send) is queued again.
func (s *Service) record(ctx context.Context, e *Entry) error {
	created, err := s.log.Create(ctx, e)
	if err != nil {
		return err
	}
	if created {
		s.m.firings.WithLabelValues(e.Table, e.Rule, e.State).Inc()
		s.enqueue(e.Table, e.Rule, e.ID, time.Time{})
		return nil
	}
	old, _, err := s.log.Get(ctx, e.Table, e.Rule, e.ID)
	if err != nil {
		return err
	}
	if old.Status == StatusPending {
		s.enqueue(e.Table, e.Rule, e.ID, old.NextAttempt)
	}
	return nil
}

// recordAll records entries, several at a time: a link's or an
// evaluation's firings are all logged before its cursor or state moves.
func (s *Service) recordAll(ctx context.Context, entries []*Entry) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for _, e := range entries {
		g.Go(func() error { return s.record(ctx, e) })
	}
	return g.Wait()
}

func (s *Service) enqueue(table, rule, id string, due time.Time) {
	s.mu.Lock()
	s.queue[id] = queued{table: table, rule: rule, due: due}
	s.mu.Unlock()
}

// deliverDue makes the due delivery attempts of the table, cfg.Workers at
// a time.
func (s *Service) deliverDue(ctx context.Context, table string) error {
	now := s.now()
	s.mu.Lock()
	var due []string
	pending := 0
	for id, q := range s.queue {
		if q.table != table {
			continue
		}
		pending++
		if !q.due.After(now) {
			due = append(due, id)
		}
	}
	s.mu.Unlock()
	s.m.pending.WithLabelValues(table).Set(float64(pending))
	sem := make(chan struct{}, s.cfg.Workers)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for _, id := range due {
		if ctx.Err() != nil {
			break
		}
		s.mu.Lock()
		q := s.queue[id]
		s.mu.Unlock()
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := s.deliverOne(ctx, q, id); err != nil && ctx.Err() == nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (s *Service) deliverOne(ctx context.Context, q queued, id string) error {
	e, ver, err := s.log.Get(ctx, q.table, q.rule, id)
	if objstore.IsNotExist(err) {
		// A marker whose entry was never written (a crash between the
		// two): its data is evaluated again (the cursor or rule state did
		// not move), which writes the entry and queues it.
		s.dequeue(id)
		return nil
	}
	if err != nil {
		return err
	}
	if e.Status != StatusPending {
		_ = s.log.DropPending(ctx, PendingRef{Table: q.table, Rule: q.rule, ID: id})
		s.dequeue(id)
		return nil
	}
	if e.NextAttempt.After(s.now()) {
		s.enqueue(q.table, q.rule, id, e.NextAttempt)
		return nil
	}
	n, err := s.d.Attempt(ctx, e, ver, false)
	if errors.Is(err, objstore.ErrChanged) {
		return nil // another evaluator recorded an attempt; the next round reads it
	}
	if n.Status == StatusPending {
		s.enqueue(q.table, q.rule, id, n.NextAttempt)
	} else {
		s.dequeue(id)
	}
	return nil
}

func (s *Service) dequeue(id string) {
	s.mu.Lock()
	delete(s.queue, id)
	s.mu.Unlock()
}

// Redeliver sends a logged firing again now, under its id, whatever its
// status (a dead letter, or one delivered that a receiver lost), and
// records the outcome. A webhook turned off by a 410 is called anyway and
// turned on again if it answers 2xx.
func Redeliver(ctx context.Context, d *Deliverer, log *ActionLog, id string) (*Entry, error) {
	e, ver, err := log.Find(ctx, id)
	if err != nil {
		return nil, err
	}
	n, err := d.Attempt(ctx, e, ver, true)
	return n, err
}
