package kinesis

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics are the Kinesis series of one process, created once on its
// registerer and given to each of its sources.
type Metrics struct {
	records    *prometheus.CounterVec // stream, shard
	behind     *prometheus.GaugeVec   // stream, shard
	throttles  *prometheus.CounterVec // stream, shard
	leaseMoves *prometheus.CounterVec // stream, shard
	errors     *prometheus.CounterVec // stream, op
	calls      *prometheus.CounterVec // stream, shard
}

// NewMetrics creates the series on reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	shard := []string{"stream", "shard"}
	m := &Metrics{
		records: f.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_kinesis_records_total",
			Help: "Records read from a shard and handed to the writer (a rewind reads some again).",
		}, shard),
		behind: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_kinesis_behind_latest_milliseconds",
			Help: "How far the last GetRecords answer of a shard was behind its tip (MillisBehindLatest).",
		}, shard),
		throttles: f.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_kinesis_throttles_total",
			Help: "GetRecords calls answered ProvisionedThroughputExceeded (or KMS throttling); each slows the shard's polling.",
		}, shard),
		leaseMoves: f.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_kinesis_lease_moves_total",
			Help: "Shard leases this process took from another owner (expired or handed off) or lost.",
		}, shard),
		errors: f.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_kinesis_errors_total",
			Help: "Failed Kinesis and lease calls, by operation; all are retried.",
		}, []string{"stream", "op"}),
		calls: f.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_kinesis_get_records_calls_total",
			Help: "GetRecords calls made on a shard by this process.",
		}, shard),
	}
	return m
}
