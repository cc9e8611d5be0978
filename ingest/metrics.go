package ingest

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/internal/promreg"
)

// metrics are shared by every source and writer of one process.
type metrics struct {
	recordsIn      *prometheus.CounterVec   // table
	recordsWritten *prometheus.CounterVec   // table
	deadLetters    *prometheus.CounterVec   // table, reason
	bytesWritten   *prometheus.CounterVec   // table, kind
	objects        *prometheus.CounterVec   // table, kind
	flushDuration  *prometheus.HistogramVec // table
	objectSize     *prometheus.HistogramVec // table
	flushFailures  *prometheus.CounterVec   // table, reason
	commits        *prometheus.CounterVec   // table
	rewinds        *prometheus.CounterVec   // table
	gapPositions   *prometheus.CounterVec   // table
	sourceResets   *prometheus.CounterVec   // table
	bufferedBytes  prometheus.Gauge
	budgetWaits    prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		recordsIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_ingest_records_received_total",
			Help: "Records delivered by sources, good or bad.",
		}, []string{"table"}),
		recordsWritten: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_ingest_records_written_total",
			Help: "Records in committed raw objects.",
		}, []string{"table"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_ingest_dead_letters_total",
			Help: "Records committed to the dead-letter area, by reason.",
		}, []string{"table", "reason"}),
		bytesWritten: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_ingest_written_bytes_total",
			Help: "Bytes of objects uploaded, by kind (raw, deadletter, commit).",
		}, []string{"table", "kind"}),
		objects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_ingest_objects_written_total",
			Help: "Objects uploaded, by kind (raw, deadletter, commit).",
		}, []string{"table", "kind"}),
		flushDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sluice_ingest_flush_duration_seconds",
			Help:    "Time from the start of a flush (encode) to its commit record.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 14),
		}, []string{"table"}),
		objectSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sluice_ingest_object_size_bytes",
			Help:    "Size of raw Parquet objects written.",
			Buckets: prometheus.ExponentialBuckets(4<<10, 4, 10),
		}, []string{"table"}),
		flushFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_ingest_flush_failures_total",
			Help: "Flushes that did not commit, by reason (upload, commit, conflict, encode); each rewinds its partition.",
		}, []string{"table", "reason"}),
		commits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_ingest_commits_total",
			Help: "Commit records written.",
		}, []string{"table"}),
		rewinds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_ingest_rewinds_total",
			Help: "Partitions rewound to their last commit after a failed flush.",
		}, []string{"table"}),
		gapPositions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_ingest_gap_positions_total",
			Help: "Source positions recorded as lost in gap links (retention or truncation removed them before they were ingested).",
		}, []string{"table"}),
		sourceResets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_ingest_source_resets_total",
			Help: "Reset links written: a source partition restarted under a new incarnation (topic re-created, log truncated).",
		}, []string{"table"}),
		bufferedBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_ingest_buffered_bytes",
			Help: "Input bytes held in buffers and uncommitted flushes (bounded by memory_budget).",
		}),
		budgetWaits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_ingest_backpressure_waits_total",
			Help: "Times fetching paused because the memory budget was used up.",
		}),
	}
	m.recordsIn = promreg.Register(reg, m.recordsIn)
	m.recordsWritten = promreg.Register(reg, m.recordsWritten)
	m.deadLetters = promreg.Register(reg, m.deadLetters)
	m.bytesWritten = promreg.Register(reg, m.bytesWritten)
	m.objects = promreg.Register(reg, m.objects)
	m.flushDuration = promreg.Register(reg, m.flushDuration)
	m.objectSize = promreg.Register(reg, m.objectSize)
	m.flushFailures = promreg.Register(reg, m.flushFailures)
	m.commits = promreg.Register(reg, m.commits)
	m.rewinds = promreg.Register(reg, m.rewinds)
	m.gapPositions = promreg.Register(reg, m.gapPositions)
	m.sourceResets = promreg.Register(reg, m.sourceResets)
	m.bufferedBytes = promreg.Register(reg, m.bufferedBytes)
	m.budgetWaits = promreg.Register(reg, m.budgetWaits)
	return m
}
