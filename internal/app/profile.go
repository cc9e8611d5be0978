package app

import (
	"fmt"
	"os"
	"runtime/pprof"
	"runtime/trace"
)

// Profile is the whole run's CPU profile and allocation profile (for
// pprof) and execution trace (for go tool trace), each written to its file
// when the path is set.
type Profile struct {
	CPU   string
	Mem   string
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

// Stop stops what Start started and writes the allocation profile: what
// the whole run allocated, by call site (pprof -sample_index=alloc_space).
func (p Profile) Stop() {
	if p.CPU != "" {
		pprof.StopCPUProfile()
	}
	if p.Mem != "" {
		if err := writeAllocs(p.Mem); err != nil {
			fmt.Fprintf(os.Stderr, "memprofile: %v\n", err)
		}
	}
	if p.Trace != "" {
		trace.Stop()
	}
}

func writeAllocs(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
