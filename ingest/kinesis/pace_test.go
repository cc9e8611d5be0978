package kinesis

import (
	"testing"
	"time"
)

// TestShardPollRecovers checks the reader's pace around throttling: each
// throttled call doubles the pause up to its cap, and once calls are
// answered again the reader is back at its poll interval within six of
// them, from the cap.
func TestShardPollRecovers(t *testing.T) {
	const poll = 250 * time.Millisecond
	p := &shardPoll{interval: poll}
	now := time.Unix(1_800_000_000, 0)
	for i := range 8 {
		p.throttled(now)
		want := min(poll<<(i+1), maxThrottledInterval)
		if p.interval != want || !p.nextCall.Equal(now.Add(want)) {
			t.Fatalf("after %d throttled calls: interval %v, next call in %v; want %v", i+1, p.interval, p.nextCall.Sub(now), want)
		}
	}
	p.failures = 3
	answered := 0
	for p.interval > poll {
		p.succeeded(poll)
		answered++
		if answered > 6 {
			t.Fatalf("after %d answered calls the pause is still %v (poll interval %v)", answered, p.interval, poll)
		}
	}
	if p.interval != poll || p.failures != 0 {
		t.Fatalf("recovered to %v with %d failures; want %v and 0", p.interval, p.failures, poll)
	}
	p.succeeded(poll)
	if p.interval != poll {
		t.Fatalf("an answered call at full pace moved the pause to %v", p.interval)
	}
}
