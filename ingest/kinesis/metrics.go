package kinesis

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/internal/promreg"
)

type metrics struct {
	records    *prometheus.CounterVec // stream, shard
	behind     *prometheus.GaugeVec   // stream, shard
	throttles  *prometheus.CounterVec // stream, shard
	leaseMoves *prometheus.CounterVec // stream, shard
	errors     *prometheus.CounterVec // stream, op
	calls      *prometheus.CounterVec // stream, shard
}

func newMetrics(reg prometheus.Registerer) *metrics {
	shard := []string{"stream", "shard"}
	m := &metrics{
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_kinesis_records_total",
			Help: "Records read from a shard and handed to the writer (a rewind reads some again).",
		}, shard),
		behind: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_kinesis_behind_latest_milliseconds",
			Help: "How far the last GetRecords answer of a shard was behind its tip (MillisBehindLatest).",
		}, shard),
		throttles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_kinesis_throttles_total",
			Help: "GetRecords calls answered ProvisionedThroughputExceeded (or KMS throttling); each slows the shard's polling.",
		}, shard),
		leaseMoves: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_kinesis_lease_moves_total",
			Help: "Shard leases this process took from another owner (expired or handed off) or lost.",
		}, shard),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_kinesis_errors_total",
			Help: "Failed Kinesis and lease calls, by operation; all are retried.",
		}, []string{"stream", "op"}),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_kinesis_get_records_calls_total",
			Help: "GetRecords calls made on a shard by this process.",
		}, shard),
	}
	m.records = promreg.Register(reg, m.records)
	m.behind = promreg.Register(reg, m.behind)
	m.throttles = promreg.Register(reg, m.throttles)
	m.leaseMoves = promreg.Register(reg, m.leaseMoves)
	m.errors = promreg.Register(reg, m.errors)
	m.calls = promreg.Register(reg, m.calls)
	return m
}
