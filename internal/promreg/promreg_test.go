package promreg

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestRegisterSharesExisting(t *testing.T) {
	reg := prometheus.NewRegistry()
	newCounter := func() *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_test_things_total", Help: "h"}, []string{"l"})
	}
	a := Register(reg, newCounter())
	b := Register(reg, newCounter())
	if a != b {
		t.Fatal("second registration must return the first collector")
	}
	a.WithLabelValues("x").Inc()
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 1 || mfs[0].GetMetric()[0].GetCounter().GetValue() != 1 {
		t.Fatalf("gathered %v, %v", mfs, err)
	}
	if c := Register(nil, newCounter()); c == nil {
		t.Fatal("nil registerer returns the collector unregistered")
	}
}
