package aggregate

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/sluicehq/sluice/lake"
)

// Metrics are the aggregator series of one process (its services, their
// compactors and sweepers), created once on its registerer and given to
// each of them.
type Metrics struct {
	windows      *prometheus.CounterVec   // table, window, outcome: summarised|recomputed|skipped|late
	tooLate      *prometheus.CounterVec   // table
	watermarkLag *prometheus.GaugeVec     // table: now - watermark, seconds
	watermark    *prometheus.GaugeVec     // table: unix seconds
	jobDuration  *prometheus.HistogramVec // table
	runs         *prometheus.CounterVec   // table, outcome: ok|error|locked
	rowsRead     *prometheus.CounterVec   // table
	lastSuccess  *prometheus.GaugeVec     // table: unix seconds
	fenced       *prometheus.CounterVec   // table
	heldBy       *prometheus.GaugeVec     // table, cause: 1 for the cause holding the watermark, 0 for the others

	compaction *compactMetrics
	sweep      *lake.SweepMetrics

	// The last watermark published per table: the lag of a table without a
	// watermark keeps growing from the one its series show.
	mu     sync.Mutex
	lastWM map[string]time.Time
}

// NewMetrics creates the series on reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	m := &Metrics{
		windows: f.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_aggregate_windows_total",
			Help: "Windows looked at by the aggregator, by outcome: summarised (first time), recomputed (late data), skipped (unchanged), late (frozen; new records counted as too late).",
		}, []string{"table", "window", "outcome"}),
		tooLate: f.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_aggregate_too_late_records_total",
			Help: "Records that reached a window after it was frozen (beyond the late horizon); they stay in raw data only.",
		}, []string{"table"}),
		watermarkLag: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_aggregate_watermark_lag_seconds",
			Help: "Wall clock minus the table's event-time watermark.",
		}, []string{"table"}),
		watermark: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_aggregate_watermark_timestamp_seconds",
			Help: "The table's event-time watermark.",
		}, []string{"table"}),
		jobDuration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sluice_aggregate_job_duration_seconds",
			Help:    "Duration of one aggregation run of a table.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 16),
		}, []string{"table"}),
		runs: f.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_aggregate_runs_total",
			Help: "Aggregation runs by outcome (ok, error, locked: another aggregator held the lease).",
		}, []string{"table", "outcome"}),
		rowsRead: f.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_aggregate_rows_read_total",
			Help: "Raw rows read to compute summaries.",
		}, []string{"table"}),
		lastSuccess: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_aggregate_last_success_timestamp_seconds",
			Help: "When a table's aggregation last finished without error.",
		}, []string{"table"}),
		fenced: f.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_aggregate_fenced_writes_total",
			Help: "Summary writes refused because a newer aggregator took the lease over, or wrote the object since this one read it; such a write never lands.",
		}, []string{"table"}),
		heldBy: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_aggregate_watermark_held_by",
			Help: "1 for what holds the table's watermark at the last run, 0 for the other causes: allowed_lateness (normal), lagging_partition (its slowest partition is behind the broker), idle_wait (a quiet partition not yet idle), clock_cap (data past the clock), backlog_genesis (a partition opened on a backlog has no data yet: no watermark), no_data.",
		}, []string{"table", "cause"}),
		compaction: newCompactMetrics(f),
		sweep:      lake.NewSweepMetrics(reg),
		lastWM:     map[string]time.Time{},
	}
	return m
}

// Sweep are the series of the services' sweepers, for a sweeper the process
// runs beside them.
func (m *Metrics) Sweep() *lake.SweepMetrics { return m.sweep }

// observeWatermark publishes what a run found: the watermark and its lag
// when there is one; when there is none (ok false) the lag keeps growing
// from the last watermark published, since that is where windows stand;
// and in any case the cause holding it.
func (m *Metrics) observeWatermark(table string, wm time.Time, cause WatermarkCause, ok bool, now time.Time) {
	m.mu.Lock()
	if ok {
		m.lastWM[table] = wm
	} else {
		wm, ok = m.lastWM[table]
	}
	m.mu.Unlock()
	if ok {
		m.watermark.WithLabelValues(table).Set(float64(wm.UnixMicro()) / 1e6)
		m.watermarkLag.WithLabelValues(table).Set(now.Sub(wm).Seconds())
	}
	for _, c := range WatermarkCauses {
		v := 0.0
		if c == cause {
			v = 1
		}
		m.heldBy.WithLabelValues(table, string(c)).Set(v)
	}
}
