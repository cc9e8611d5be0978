package aggregate

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/internal/promreg"
)

type metrics struct {
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

	mu     sync.Mutex
	lastWM map[string]time.Time // the last watermark published per table
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		windows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_aggregate_windows_total",
			Help: "Windows looked at by the aggregator, by outcome: summarised (first time), recomputed (late data), skipped (unchanged), late (frozen; new records counted as too late).",
		}, []string{"table", "window", "outcome"}),
		tooLate: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_aggregate_too_late_records_total",
			Help: "Records that reached a window after it was frozen (beyond the late horizon); they stay in raw data only.",
		}, []string{"table"}),
		watermarkLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_aggregate_watermark_lag_seconds",
			Help: "Wall clock minus the table's event-time watermark.",
		}, []string{"table"}),
		watermark: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_aggregate_watermark_timestamp_seconds",
			Help: "The table's event-time watermark.",
		}, []string{"table"}),
		jobDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sluice_aggregate_job_duration_seconds",
			Help:    "Duration of one aggregation run of a table.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 16),
		}, []string{"table"}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_aggregate_runs_total",
			Help: "Aggregation runs by outcome (ok, error, locked: another aggregator held the lease).",
		}, []string{"table", "outcome"}),
		rowsRead: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_aggregate_rows_read_total",
			Help: "Raw rows read to compute summaries.",
		}, []string{"table"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_aggregate_last_success_timestamp_seconds",
			Help: "When a table's aggregation last finished without error.",
		}, []string{"table"}),
		fenced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_aggregate_fenced_writes_total",
			Help: "Summary writes refused because a newer aggregator took the lease over, or wrote the object since this one read it; such a write never lands.",
		}, []string{"table"}),
		heldBy: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_aggregate_watermark_held_by",
			Help: "1 for what holds the table's watermark at the last run, 0 for the other causes: allowed_lateness (normal), lagging_partition (its slowest partition is behind the broker), idle_wait (a quiet partition not yet idle), clock_cap (data past the clock), backlog_genesis (a partition opened on a backlog has no data yet: no watermark), no_data.",
		}, []string{"table", "cause"}),
		lastWM: map[string]time.Time{},
	}
	m.windows = promreg.Register(reg, m.windows)
	m.tooLate = promreg.Register(reg, m.tooLate)
	m.watermarkLag = promreg.Register(reg, m.watermarkLag)
	m.watermark = promreg.Register(reg, m.watermark)
	m.jobDuration = promreg.Register(reg, m.jobDuration)
	m.runs = promreg.Register(reg, m.runs)
	m.rowsRead = promreg.Register(reg, m.rowsRead)
	m.lastSuccess = promreg.Register(reg, m.lastSuccess)
	m.fenced = promreg.Register(reg, m.fenced)
	m.heldBy = promreg.Register(reg, m.heldBy)
	return m
}

// observeWatermark publishes what a run found: the watermark and its lag
// when there is one; when there is none (ok false) the lag keeps growing
// from the last watermark published, since that is where windows stand;
// and in any case the cause holding it.
func (m *metrics) observeWatermark(table string, wm time.Time, cause WatermarkCause, ok bool, now time.Time) {
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
