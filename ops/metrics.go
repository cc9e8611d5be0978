package ops

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the ops pattern's metrics, registered once on the given
// registerer.
type Metrics struct {
	evaluated   *prometheus.CounterVec // records or windows a rule was evaluated on
	evalErrors  *prometheus.CounterVec
	firings     *prometheus.CounterVec
	deliveries  *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	deadLetters *prometheus.CounterVec
	stalled     *prometheus.GaugeVec
	pending     *prometheus.GaugeVec
}

// NewMetrics creates and registers the metrics on reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		evaluated: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_ops_rule_evaluations_total",
			Help: "Records (event rules) and windows (window rules) a rule was evaluated on."}, []string{"table", "rule"}),
		evalErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_ops_rule_errors_total",
			Help: "Evaluations that failed at run time (e.g. arithmetic on a NULL); the record or window does not match."}, []string{"table", "rule"}),
		firings: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_ops_firings_total",
			Help: "Firings logged in the action log, by state (fired, firing, resolved, stalled)."}, []string{"table", "rule", "state"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_ops_deliveries_total",
			Help: "Delivery attempts by target kind and outcome (delivered, retry, failed, gone)."}, []string{"table", "kind", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "sluice_ops_delivery_duration_seconds",
			Help: "Duration of one delivery attempt.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 14)}, []string{"kind"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_ops_dead_letters_total",
			Help: "Firings whose last delivery attempt failed (or whose endpoint answered 410)."}, []string{"table"}),
		stalled: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "sluice_ops_watermark_stalled",
			Help: "1 while a table's watermark has not advanced for a window rule's stalled_after."}, []string{"table"}),
		pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "sluice_ops_pending_deliveries",
			Help: "Logged firings waiting for a delivery attempt."}, []string{"table"}),
	}
	if reg != nil {
		reg.MustRegister(m.evaluated, m.evalErrors, m.firings, m.deliveries, m.latency, m.deadLetters, m.stalled, m.pending)
	}
	return m
}
