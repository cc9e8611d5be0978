// Package promreg registers collectors on an injected registerer so that
// several components of one process can share their metrics.
package promreg

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers c, or returns the collector already registered with
// the same description (a second source or aggregator in the same process).
// A nil registerer leaves c unregistered. Two different metrics under one
// name are a programming error and panic, as with MustRegister.
func Register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err)
	}
	return c
}
