package app

import (
	"os"
	"runtime/pprof"
	"runtime/trace"
)

// Profile is the whole run's CPU profile (for pprof) and execution trace
// (for go tool trace), each written to its file when the path is set.
type Profile struct {
	CPU   string
	Trace string
}

// Start starts what is set; Stop ends it once the command returns.
func (p Profile) Start() error {
	if p.CPU != "" {
		f, err := os.Create(p.CPU)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
	}
	if p.Trace != "" {
		f, err := os.Create(p.Trace)
		if err != nil {
			return err
		}
		if err := trace.Start(f); err != nil {
			return err
		}
	}
	return nil
}

// Stop stops what Start started.
func (p Profile) Stop() {
	if p.CPU != "" {
		pprof.StopCPUProfile()
	}
	if p.Trace != "" {
		trace.Stop()
	}
}
