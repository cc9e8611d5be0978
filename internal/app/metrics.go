package app

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/ingest"
	"github.com/sluicehq/sluice/objstore"
)

// procMetrics are the series that several components of one process share
// (every bucket it opens, every ingest writer), each set created once on
// the process's registry when a first component needs it. The series of a
// component the process runs once are created by the command on reg. A
// nil *procMetrics keeps every series unregistered.
type procMetrics struct {
	reg prometheus.Registerer

	mu     sync.Mutex
	store  *objstore.Metrics
	writer *ingest.Metrics
}

func newProcMetrics(reg prometheus.Registerer) *procMetrics { return &procMetrics{reg: reg} }

// registerer is the process's registry (nil when pm is).
func (pm *procMetrics) registerer() prometheus.Registerer {
	if pm == nil {
		return nil
	}
	return pm.reg
}

// stores are the series of every bucket the process opens.
func (pm *procMetrics) stores() *objstore.Metrics {
	if pm == nil {
		return nil
	}
	pm.mu.Lock()
	defer pm.mu.Unlock()
	if pm.store == nil {
		pm.store = objstore.NewMetrics(pm.reg)
	}
	return pm.store
}

// writers are the series of every ingest writer of the process.
func (pm *procMetrics) writers() *ingest.Metrics {
	if pm == nil {
		return nil
	}
	pm.mu.Lock()
	defer pm.mu.Unlock()
	if pm.writer == nil {
		pm.writer = ingest.NewMetrics(pm.reg)
	}
	return pm.writer
}
