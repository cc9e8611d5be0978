package ingest

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/sluicehq/sluice/lake"
)

// Metrics are the writer series of one process, created once on its
// registerer and given to each of its writers (the ingester's, the web
// tier's), so that a table's series count what all of them wrote.
type Metrics struct {
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
	checkpoints    *lake.CheckpointMetrics // of the writers' commit logs
}

// NewMetrics creates the series on reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	m := &Metrics{
		recordsIn: f.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_ingest_records_received_total",
			Help: "Records delivered by sources, good or bad.",
		}, []string{"table"}),
		recordsWritten: f.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_ingest_records_written_total",
			Help: "Records in committed raw objects.",
		}, []string{"table"}),
		deadLetters: f.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_ingest_dead_letters_total",
			Help: "Records committed to the dead-letter area, by reason.",
		}, []string{"table", "reason"}),
		bytesWritten: f.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_ingest_written_bytes_total",
			Help: "Bytes of objects uploaded, by kind (raw, deadletter, commit).",
		}, []string{"table", "kind"}),
		objects: f.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_ingest_objects_written_total",
			Help: "Objects uploaded, by kind (raw, deadletter, commit).",
		}, []string{"table", "kind"}),
		flushDuration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sluice_ingest_flush_duration_seconds",
			Help:    "Time from the start of a flush (encode) to its commit record.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 14),
		}, []string{"table"}),
		objectSize: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sluice_ingest_object_size_bytes",
			Help:    "Size of raw Parquet objects written.",
			Buckets: prometheus.ExponentialBuckets(4<<10, 4, 10),
		}, []string{"table"}),
		flushFailures: f.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_ingest_flush_failures_total",
			Help: "Flushes that did not commit, by reason (upload, commit, conflict, encode); each rewinds its partition.",
		}, []string{"table", "reason"}),
		commits: f.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_ingest_commits_total",
			Help: "Commit records written.",
		}, []string{"table"}),
		rewinds: f.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_ingest_rewinds_total",
			Help: "Partitions rewound to their last commit after a failed flush.",
		}, []string{"table"}),
		gapPositions: f.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_ingest_gap_positions_total",
			Help: "Source positions recorded as lost in gap links (retention or truncation removed them before they were ingested).",
		}, []string{"table"}),
		sourceResets: f.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_ingest_source_resets_total",
			Help: "Reset links written: a source partition restarted under a new incarnation (topic re-created, log truncated).",
		}, []string{"table"}),
		bufferedBytes: f.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_ingest_buffered_bytes",
			Help: "Input bytes held in buffers and uncommitted flushes (bounded by memory_budget).",
		}),
		budgetWaits: f.NewCounter(prometheus.CounterOpts{
			Name: "sluice_ingest_backpressure_waits_total",
			Help: "Times fetching paused because the memory budget was used up.",
		}),
		checkpoints: lake.NewCheckpointMetrics(reg),
	}
	return m
}
