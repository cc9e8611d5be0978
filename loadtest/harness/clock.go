package harness

import (
	"sync"
	"sync/atomic"
	"time"
)

// coarseTick is how stale a coarseClock reading may be. Latencies are
// reported in milliseconds, and event times of real producers are rarely
// finer either.
const coarseTick = 250 * time.Microsecond

// coarseClock is the wall clock, read by one goroutine every coarseTick.
// Producers flat out read the time for every event when they make it and
// again when it is acknowledged: here a read costs about 60 ns, and the
// two were 2% of the whole load-test process (`time.runtimeNow` in its
// profile), more than the ticker costs.
type coarseClock struct {
	ns   atomic.Int64 // 0 once stopped: Now reads the clock itself
	stop chan struct{}
	done sync.WaitGroup
}

func startCoarseClock() *coarseClock {
	c := &coarseClock{stop: make(chan struct{})}
	c.ns.Store(time.Now().UnixNano())
	c.done.Add(1)
	go func() {
		defer c.done.Done()
		t := time.NewTicker(coarseTick)
		defer t.Stop()
		for {
			select {
			case now := <-t.C:
				c.ns.Store(now.UnixNano())
			case <-c.stop:
				return
			}
		}
	}()
	return c
}

// Now is the time at most coarseTick ago; after Stop, the time now.
func (c *coarseClock) Now() time.Time {
	if ns := c.ns.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Now()
}

// Stop ends the ticker; Now reads the clock itself from then on.
func (c *coarseClock) Stop() {
	close(c.stop)
	c.done.Wait()
	c.ns.Store(0)
}
