package ops

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/internal/testkit/ingesttest"
	"github.com/sluicehq/sluice/objstore"
)

// feeder commits events through the real ingest writer and keeps, as the
// producer's list, the position of every event whose amount is above 50.
type feeder struct {
	*ingesttest.Feeder
	rng *rand.Rand
	big map[string]bool // positions (source/partition/offset) with amount > 50
}

func newFeeder(t testing.TB, raw objstore.Bucket, partitions int) *feeder {
	return &feeder{Feeder: ingesttest.NewFeeder(t, raw, testkit.SampleTable(t), partitions), rng: rand.New(rand.NewPCG(3, 5)), big: map[string]bool{}}
}

// event appends one event to partition p.
func (f *feeder) event(p int, ts time.Time, eventType string, amount float64, latency int64) {
	a := strconv.FormatFloat(amount, 'f', 2, 64)
	v := fmt.Appendf(nil, `{"ts":%q,"event_id":"e%d","user_id":"u%d","event_type":%q,"country":"DE","device":"mobile","amount":%s,"latency_ms":%d,"ok":true}`,
		ts.UTC().Format(time.RFC3339Nano), f.Next(p), f.rng.IntN(100), eventType, a, latency)
	if parsed, _ := strconv.ParseFloat(a, 64); parsed > 50 {
		f.big[fmt.Sprintf("%s/%d/%d", ingesttest.Source, p, f.Next(p))] = true
	}
	f.Append(p, v)
}

// random appends n events with random amounts in [0, 100) and times in
// [from, to).
func (f *feeder) random(n int, from, to time.Time) {
	span := to.Sub(from).Microseconds()
	for range n {
		ts := from.Add(time.Duration(f.rng.Int64N(span)) * time.Microsecond)
		f.event(f.rng.IntN(f.Partitions()), ts, "click", f.rng.Float64()*100, 50)
	}
}
