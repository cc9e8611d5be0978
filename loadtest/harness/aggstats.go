package harness

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
)

// AggregatorStats are the aggregator's window counters for the table at the
// end of the run (sluice_aggregate_windows_total and
// sluice_aggregate_too_late_records_total).
type AggregatorStats struct {
	Summarised int64 `json:"summarised"` // windows summarised the first time
	Recomputed int64 `json:"recomputed"` // windows recomputed for late data
	// RecomputedByWindow splits Recomputed by window size (1m, 1h, ...).
	RecomputedByWindow map[string]int64 `json:"recomputed_by_window,omitempty"`
	Late               int64            `json:"late"`             // frozen windows that got records
	TooLateRecords     int64            `json:"too_late_records"` // records left out of summaries
}

// MetricAggregator reads the aggregator's counters.
type MetricAggregator func(ctx context.Context) (AggregatorStats, bool)

const (
	windowsMetric = "sluice_aggregate_windows_total"
	tooLateMetric = "sluice_aggregate_too_late_records_total"
)

// GatherAggregator reads the aggregator's counters for table from an
// in-process registry.
func GatherAggregator(g prometheus.Gatherer, table string) MetricAggregator {
	return func(context.Context) (AggregatorStats, bool) {
		st := AggregatorStats{RecomputedByWindow: map[string]int64{}}
		mfs, err := g.Gather()
		if err != nil {
			return st, false
		}
		found := false
		for _, mf := range mfs {
			if mf.GetName() != windowsMetric && mf.GetName() != tooLateMetric {
				continue
			}
			for _, m := range mf.GetMetric() {
				labels := map[string]string{}
				for _, l := range m.GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				if labels["table"] != table {
					continue
				}
				found = true
				v := int64(m.GetCounter().GetValue())
				if mf.GetName() == tooLateMetric {
					st.TooLateRecords += v
					continue
				}
				switch labels["outcome"] {
				case "summarised":
					st.Summarised += v
				case "recomputed":
					st.Recomputed += v
					st.RecomputedByWindow[labels["window"]] += v
				case "late":
					st.Late += v
				}
			}
		}
		return st, found
	}
}
