package harness

import (
	"testing"
	"time"
)

// TestCoarseClockFollowsTheWallClock: the coarse clock moves with the wall
// clock while it runs, and is the wall clock itself once stopped (the
// acknowledgements of the watermark markers come after the producers).
func TestCoarseClockFollowsTheWallClock(t *testing.T) {
	c := startCoarseClock()
	first := c.Now()
	time.Sleep(50 * time.Millisecond)
	later, wall := c.Now(), time.Now()
	if !later.After(first) {
		t.Errorf("the coarse clock stood still over 50ms: %s, then %s", first, later)
	}
	if lag := wall.Sub(later); lag < 0 || lag > time.Second {
		t.Errorf("the coarse clock is %s behind the wall clock", lag)
	}
	c.Stop()
	before := time.Now()
	if got := c.Now(); got.Before(before) {
		t.Errorf("stopped, the clock read %s, before %s", got, before)
	}
}
