package ops

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/aggregate"
	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore/objstoretest"
)

// An evaluator that falls behind a compaction whose replaced objects the
// sweeper already deleted reads the link's rows from the compacted
// objects: nothing matching is missed, nothing is logged twice.
func TestEventRulesAfterCompactionAndSweep(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, secretOld)
	b := objstoretest.NewLocal(t)
	f := newFeeder(t, b, 2)
	hour := time.Now().UTC().Truncate(time.Hour).Add(-3 * time.Hour)
	for range 6 {
		f.random(40, hour, hour.Add(2*time.Hour)) // two closed hours, small objects
		f.Commit()
	}
	commits := lake.NewCommitLog(b)
	c, err := aggregate.NewCompactor(aggregate.CompactorConfig{TargetBytes: 1 << 20, CloseDelay: time.Minute}, b, commits, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := c.CompactTable(ctx, testkit.SampleTable(t), time.Now()); err != nil {
		t.Fatal(err)
	}
	live, err := commits.LiveObjects(ctx, "events")
	if err != nil {
		t.Fatal(err)
	}
	isLive := map[string]bool{}
	compacted := 0
	for _, o := range live {
		isLive[o.Key] = true
		if o.Compaction != "" {
			compacted++
		}
	}
	recs, err := commits.Records(ctx, "events")
	if err != nil {
		t.Fatal(err)
	}
	deleted := 0
	for _, r := range recs {
		for _, o := range r.Objects {
			if o.Kind == lake.KindRaw && !isLive[o.Key] {
				if err := b.Delete(ctx, o.Key); err != nil { // what the sweeper does a grace later
					t.Fatal(err)
				}
				deleted++
			}
		}
	}
	if compacted == 0 || deleted == 0 {
		t.Fatalf("%d compacted objects, %d replaced ones deleted: the test proves nothing", compacted, deleted)
	}
	svc := newTestService(t, hookRules(t, rcv.srv.URL, 3, time.Second, time.Second), b, nil, prometheus.NewRegistry())
	if err := svc.EvaluateOnce(ctx, "events"); err != nil {
		t.Fatal(err)
	}
	logged := positionsOf(t, svc)
	checkAgainstProducer(t, f.big, logged)
	checkDeliveries(t, logged, rcv.seen())
}
