package ops

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/ingest"
	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
)

// feeder commits events through the real ingest writer and keeps, as the
// producer's list, the position of every event whose amount is above 50.
type feeder struct {
	t     testing.TB
	w     *ingest.Writer
	parts []*ingest.Partition
	next  []int64
	rng   *rand.Rand
	big   map[string]bool // positions (source/partition/offset) with amount > 50
}

func newFeeder(t testing.TB, raw objstore.Bucket, partitions int) *feeder {
	w, err := ingest.NewWriter(ingest.WriterConfig{}, raw, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	f := &feeder{t: t, w: w, rng: rand.New(rand.NewPCG(3, 5)), big: map[string]bool{}}
	for p := range partitions {
		part, _, err := w.OpenPartition(context.Background(), testkit.SampleTable(t), "kafka:events", fmt.Sprint(p), ingest.StartAt(lake.Position{}, "test"))
		if err != nil {
			t.Fatal(err)
		}
		f.parts = append(f.parts, part)
		f.next = append(f.next, 0)
	}
	return f
}

// event appends one event to partition p.
func (f *feeder) event(p int, ts time.Time, eventType string, amount float64, latency int64) {
	a := strconv.FormatFloat(amount, 'f', 2, 64)
	v := fmt.Appendf(nil, `{"ts":%q,"event_id":"e%d","user_id":"u%d","event_type":%q,"country":"DE","device":"mobile","amount":%s,"latency_ms":%d,"ok":true}`,
		ts.UTC().Format(time.RFC3339Nano), f.next[p], f.rng.IntN(100), eventType, a, latency)
	if parsed, _ := strconv.ParseFloat(a, 64); parsed > 50 {
		f.big[fmt.Sprintf("kafka:events/%d/%d", p, f.next[p])] = true
	}
	f.parts[p].Append(v, lake.PositionOf(f.next[p]), time.Now())
	f.next[p]++
}

// random appends n events with random amounts in [0, 100) and times in
// [from, to).
func (f *feeder) random(n int, from, to time.Time) {
	span := to.Sub(from).Microseconds()
	for range n {
		ts := from.Add(time.Duration(f.rng.Int64N(span)) * time.Microsecond)
		f.event(f.rng.IntN(len(f.parts)), ts, "click", f.rng.Float64()*100, 50)
	}
}

func (f *feeder) commit() {
	for _, p := range f.parts {
		if p.Pending() == 0 {
			continue
		}
		done := make(chan ingest.FlushResult, 1)
		if err := p.Flush(context.Background(), func(r ingest.FlushResult) { done <- r }); err != nil {
			f.t.Fatal(err)
		}
		r := <-done
		p.Settled(r)
		if r.Err != nil {
			f.t.Fatal(r.Err)
		}
	}
}
