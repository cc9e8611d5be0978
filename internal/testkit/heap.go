package testkit

import (
	"runtime/metrics"
	"sync/atomic"
	"time"
)

// HeapObjects is the heap the process holds now: live objects and those
// not yet collected. Run runtime.GC first for a baseline of live objects.
func HeapObjects() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// PeakHeap runs fn and returns the most heap (HeapObjects) the process
// held meanwhile, sampled every 5ms without stopping the world.
func PeakHeap(fn func()) uint64 {
	var peak atomic.Uint64
	peak.Store(HeapObjects())
	stop, sampled := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if v := HeapObjects(); v > peak.Load() {
					peak.Store(v)
				}
			}
		}
	}()
	fn()
	close(stop)
	<-sampled
	return max(peak.Load(), HeapObjects())
}
