package harness

import (
	"testing"
	"time"
)

// TestAckSamplesStayBoundedAndEven: a partition's ack samples never pass
// maxAckSamples however long the run, and those kept are every stride-th
// offset, from the first to the last: the latency is still measured over
// the whole run.
func TestAckSamplesStayBoundedAndEven(t *testing.T) {
	a := &ackSampler{stride: ackSampleEvery}
	const offsets = 40 * maxAckSamples * ackSampleEvery
	at := time.Unix(1_700_000_000, 0)
	for o := range int64(offsets) {
		a.add(o, at.Add(time.Duration(o)))
		if len(a.s) >= maxAckSamples {
			t.Fatalf("%d samples after offset %d, want fewer than %d", len(a.s), o, maxAckSamples)
		}
	}
	if a.stride <= ackSampleEvery {
		t.Fatalf("stride %d: never thinned", a.stride)
	}
	for i, s := range a.s {
		if want := int64(i) * a.stride; s.offset != want || s.at() != at.Add(time.Duration(want)) {
			t.Fatalf("sample %d: offset %d at %s, want offset %d (every %d-th)", i, s.offset, s.at(), want, a.stride)
		}
	}
	if last := a.s[len(a.s)-1].offset; last < offsets-a.stride {
		t.Fatalf("last sample at offset %d of %d: the end of the run is not sampled", last, offsets)
	}
}
