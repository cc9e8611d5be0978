package lake

import (
	"cmp"
	"errors"
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/sluicehq/sluice/objstore"
)

// Checkpoint age is counted in links, not seconds: what a resume costs is
// the links it reads after the newest checkpoint, and a quiet partition's
// old checkpoint costs nothing. While checkpoints are written every
// CheckpointEvery links the age stays below it; above it, checkpoints fail
// (sluice_lake_checkpoint_writes_total{outcome="error"}) and every resume
// of the partition reads more.

// CheckpointMetrics are the checkpoint series of one process, created once
// and given to the commit log of each of its writers.
type CheckpointMetrics struct {
	age    *prometheus.GaugeVec   // table
	writes *prometheus.CounterVec // table, outcome: ok|error
}

// NewCheckpointMetrics creates the series on reg (nil: unregistered).
func NewCheckpointMetrics(reg prometheus.Registerer) *CheckpointMetrics {
	f := promauto.With(reg)
	return &CheckpointMetrics{
		age: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_lake_checkpoint_age_links",
			Help: "The most links after the newest checkpoint over the partitions of the table this process committed to or resumed since it started: the links a resume of that partition reads past the checkpoint. Below the checkpoint interval (1000) while checkpoints are written.",
		}, []string{"table"}),
		writes: f.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_lake_checkpoint_writes_total",
			Help: "Checkpoints written by outcome: ok (or already there), error (resumes read more links until the next one).",
		}, []string{"table", "outcome"}),
	}
}

// checkpointAges keeps, per partition this log wrote or resumed, where its
// chain ends and where its newest known checkpoint is, and publishes the
// largest difference per table.
type checkpointAges struct {
	m      *CheckpointMetrics
	limit  int // partitions kept per table; see note
	mu     sync.Mutex
	tables map[string]*tableAges
}

// maxAgePartitions bounds the partitions remembered per table: a source
// with a partition per object (an inbox) would otherwise grow the map by
// one entry per object ever read.
const maxAgePartitions = 1 << 14

type tableAges struct {
	parts map[partitionID]partitionAge
	max   int64
}

type partitionAge struct {
	end  int64 // the chain's next link
	ckpt int64 // End.Seq of the newest checkpoint known; 0: none
}

// WithMetrics publishes the age of the checkpoints of the chains this log
// commits to or resumes on m, and returns l. Give it to the log of the
// process that commits (one per process: the age is the largest over the
// partitions this log has seen). A nil m keeps the metrics unregistered.
func (l *CommitLog) WithMetrics(m *CheckpointMetrics) *CommitLog {
	if m == nil {
		m = NewCheckpointMetrics(nil)
	}
	l.ages = &checkpointAges{m: m, limit: maxAgePartitions, tables: map[string]*tableAges{}}
	return l
}

// note records what is known of a partition: its chain's next link end,
// and, if ckpt is not negative, its newest checkpoint's End.Seq (0: none).
func (a *checkpointAges) note(pid partitionID, end, ckpt int64) {
	if a == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	t := a.tables[pid.table]
	if t == nil {
		t = &tableAges{parts: map[partitionID]partitionAge{}}
		a.tables[pid.table] = t
		for _, o := range []string{"ok", "error"} {
			a.m.writes.WithLabelValues(pid.table, o)
		}
	}
	old, seen := t.parts[pid]
	p := partitionAge{end: end, ckpt: old.ckpt}
	if ckpt >= 0 {
		p.ckpt = ckpt
	}
	t.parts[pid] = p
	age := max(0, p.end-p.ckpt)
	switch {
	case age >= t.max:
		t.max = age
	case seen && old.end-old.ckpt == t.max:
		// The partition that set the maximum got younger (a checkpoint):
		// find the new one. Rare: once per checkpoint of that partition.
		t.max = 0
		for _, q := range t.parts {
			t.max = max(t.max, q.end-q.ckpt)
		}
	}
	if len(t.parts) > a.limit {
		t.evictYoungest(a.limit / 2)
	}
	a.m.age.WithLabelValues(pid.table).Set(float64(t.max))
}

// evictYoungest keeps the keep partitions with the oldest checkpoints: the
// maximum stays, and what is forgotten is what matters least. A forgotten
// partition that commits again counts from its chain's start until its
// next checkpoint or resume (an overestimate only for a chain that had
// one, in a table with more partitions than the limit).
func (t *tableAges) evictYoungest(keep int) {
	type entry struct {
		pid partitionID
		age int64
	}
	all := make([]entry, 0, len(t.parts))
	for pid, p := range t.parts {
		all = append(all, entry{pid, p.end - p.ckpt})
	}
	slices.SortFunc(all, func(a, b entry) int { return cmp.Compare(b.age, a.age) })
	for _, e := range all[keep:] {
		delete(t.parts, e.pid)
	}
}

// written records the outcome of a checkpoint write at link end.
func (a *checkpointAges) written(pid partitionID, end int64, err error) {
	if a == nil {
		return
	}
	if err != nil && !errors.Is(err, objstore.ErrExists) {
		a.m.writes.WithLabelValues(pid.table, "error").Inc()
		return
	}
	a.m.writes.WithLabelValues(pid.table, "ok").Inc()
	a.note(pid, end, end)
}
