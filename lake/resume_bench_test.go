package lake_test

import (
	"context"
	"testing"
	"time"

	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore/objstoretest"
)

// BenchmarkResumeLongChain measures what resuming a partition costs once its
// chain is long: from the newest checkpoint (the default) and, for
// comparison, by reading the whole chain as the first commit protocol did.
// calls/op counts LIST and GET requests to the store.
//
//	go test -run '^$' -bench ResumeLongChain -benchtime 20x ./lake
func BenchmarkResumeLongChain(b *testing.B) {
	const links = 5000
	store := objstoretest.NewLocal(b)
	ctx := context.Background()
	w := lake.NewCommitLog(store) // checkpoints every DefaultCheckpointEvery links
	if _, err := w.Open(ctx, "bench", "kafka:events", "0", "w", func(context.Context) (lake.Genesis, error) {
		return lake.Genesis{SourceID: "t"}, nil
	}); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	for seq := int64(1); seq <= links; seq++ {
		rec := lake.CommitRecord{Table: "bench", Source: "kafka:events", Partition: "0", Seq: seq, Kind: lake.LinkData,
			First: lake.PositionOf((seq - 1) * 100), Next: lake.PositionOf(seq * 100), SourceID: "t", Writer: "w", Objects: []lake.CommittedObject{}}
		if err := w.Commit(ctx, rec); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("built a chain of %d links in %s", links, time.Since(start).Round(time.Millisecond))
	for _, mode := range []struct {
		name string
		read func(l *lake.CommitLog) (lake.End, error)
	}{
		{"from checkpoint", func(l *lake.CommitLog) (lake.End, error) {
			end, _, err := l.Resume(ctx, "bench", "kafka:events", "0")
			return end, err
		}},
		{"whole chain", func(l *lake.CommitLog) (lake.End, error) {
			c, err := l.Chain(ctx, "bench", "kafka:events", "0")
			end, _ := c.End()
			return end, err
		}},
	} {
		b.Run(mode.name, func(b *testing.B) {
			var calls int
			for b.Loop() {
				h := objstoretest.NewHookBucket(store)
				end, err := mode.read(lake.NewCommitLog(h)) // a fresh process: nothing cached
				if err != nil || end.Seq != links+1 {
					b.Fatalf("end %+v, %v", end, err)
				}
				calls += h.Count("iter") + h.Count("get")
			}
			b.ReportMetric(float64(calls)/float64(b.N), "calls/op")
		})
	}
}
