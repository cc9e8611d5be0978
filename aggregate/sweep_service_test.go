package aggregate_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluicehq/sluice/aggregate"
	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/objstore/objstoretest"
	"github.com/sluicehq/sluice/schema"
)

// Retention through the aggregator: once a retention record retires a
// day, readers drop it whole, the aggregator never recomputes its windows
// (not even after the sweeper deleted their summaries), and the summaries
// that remain are still exact.
func TestRetentionNeverRecomputesRetiredWindows(t *testing.T) {
	ctx := t.Context()
	tbl := testkit.SampleTable(t)
	tbl.Retention = &schema.Retention{Raw: 48 * time.Hour, Summaries: 72 * time.Hour}
	if err := tbl.Validate(); err != nil {
		t.Fatal(err)
	}
	raw, summaries := objstoretest.NewLocal(t), objstoretest.NewLocal(t)
	now := time.Now().UTC()
	old := now.Add(-5 * 24 * time.Hour).Truncate(24 * time.Hour).Add(10 * time.Hour)
	recent := now.Add(-3 * time.Hour).Truncate(time.Hour)
	f := newFeeder(t, raw, 2)
	f.add(2000, old, old.Add(2*time.Hour))
	f.add(2000, recent, recent.Add(2*time.Hour))
	f.Commit()

	svc := newService(t, raw, summaries, "a", prometheus.NewRegistry())
	if st, err := svc.RunOnce(ctx, tbl); err != nil || st.Computed == 0 {
		t.Fatalf("first run: %+v, %v", st, err)
	}
	oldDay := old.Format(time.DateOnly)
	oldSummaries := []string{
		fmt.Sprintf("%s/1m/dt=%s/hour=10.parquet", tbl.Name, oldDay),
		fmt.Sprintf("%s/1h/dt=%s/day.parquet", tbl.Name, oldDay),
		fmt.Sprintf("%s/1d/dt=%s/day.parquet", tbl.Name, oldDay),
	}
	for _, k := range oldSummaries {
		if _, err := summaries.Attributes(ctx, k); err != nil {
			t.Fatalf("summary of the old day: %v", err)
		}
	}

	sweep := func(clock time.Time) lake.SweepReport {
		t.Helper()
		sw, err := lake.NewSweeper(lake.SweepConfig{}, raw, summaries, "test", nil, lake.NewSweepMetrics(prometheus.NewRegistry()))
		if err != nil {
			t.Fatal(err)
		}
		rep, err := sw.WithClock(func() time.Time { return clock }).Sweep(ctx, tbl.Name, aggregate.TableRetention(tbl), nil)
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	rep := sweep(now)
	if !rep.Advanced || !rep.Horizon.RawBefore.After(old) || rep.Horizon.RawBefore.After(recent) {
		t.Fatalf("retention %+v (advanced %v) does not retire the old day only", rep.Horizon, rep.Advanced)
	}
	live, err := lake.NewCommitLog(raw).LiveObjects(ctx, tbl.Name)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range live {
		if o.MaxEventTimeMicros < rep.Horizon.RawBefore.UnixMicro() {
			t.Fatalf("%s is live after its day was retired", o.Key)
		}
	}
	if st, err := svc.RunOnce(ctx, tbl); err != nil || st.Computed+st.Recomputed+st.Objects != 0 {
		t.Fatalf("run after retention: %+v, %v; want nothing to do", st, err)
	}

	// A grace later the objects go, summaries too.
	rep = sweep(now.Add(2 * time.Hour))
	if n, _ := rep.Count(lake.SweepRetired); n == 0 {
		t.Fatalf("nothing retired deleted: %+v", rep.Items)
	}
	for _, k := range oldSummaries {
		if _, err := summaries.Attributes(ctx, k); !objstore.IsNotExist(err) {
			t.Fatalf("retired summary %s: %v", k, err)
		}
	}
	st, err := svc.RunOnce(ctx, tbl)
	if err != nil || st.Computed+st.Recomputed+st.Objects != 0 {
		t.Fatalf("run after deleting retired summaries: %+v, %v; want nothing recomputed", st, err)
	}
	for _, k := range oldSummaries {
		if _, err := summaries.Attributes(ctx, k); !objstore.IsNotExist(err) {
			t.Fatalf("retired summary %s was written again: %v", k, err)
		}
	}
	if n := checkAgainstRaw(t, tbl, raw, summaries, nil); n == 0 {
		t.Fatal("no windows left to check")
	}
}

// The service sweeps every table (with a rollup or not) on its schedule,
// under its own lease.
func TestServiceSweepsOnSchedule(t *testing.T) {
	tables, err := schema.Parse([]byte(`tables:
  - name: plain
    event_time: {field: ts}
    fields: [{name: ts, type: timestamp}]
`), "plain.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tables = append(tables, testkit.SampleTable(t))
	raw, summaries := objstoretest.NewLocal(t), objstoretest.NewLocal(t)
	orphans := []string{"plain/dt=2024-05-01/hour=13/killed.parquet", "events/dt=2024-05-01/hour=13/killed.parquet"}
	for _, k := range orphans {
		objstoretest.Put(t, raw, k, []byte("left by a crash"))
	}
	reg := prometheus.NewRegistry()
	// Both aggregators run on a clock in the middle of a lease slot: at a
	// real slot's edge, a lease is taken for the next slot (writable only
	// when it starts), and the sweep would wait for it up to half an hour.
	const lease = 2 * time.Hour
	offset := lease/2 - time.Duration(time.Now().UnixNano()%int64(lease))
	clock := func() time.Time { return time.Now().Add(offset) }
	cfg := aggregate.Config{Interval: time.Hour, Lease: lease, ClockOffset: offset, CompactEvery: -1,
		Compaction: aggregate.CompactorConfig{CommitWithin: 100 * time.Millisecond},
		Sweep:      aggregate.SweepConfig{Every: 200 * time.Millisecond, SweepConfig: lake.SweepConfig{Grace: time.Second}}}
	if err := (aggregate.Config{Sweep: aggregate.SweepConfig{SweepConfig: lake.SweepConfig{Grace: time.Minute}}}).WithDefaults().Validate(); err == nil {
		t.Error("a grace shorter than compaction.commit_within was accepted")
	}
	svc, err := aggregate.NewService(cfg, raw, summaries, tables, "a", slog.New(slog.DiscardHandler), aggregate.NewMetrics(reg))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	// Another aggregator holds the lease of plain's sweep (same lease
	// length, so the same slot): this one sweeps events only.
	otherLocker := aggregate.NewBucketLocker(summaries, cfg.Lease, "b")
	aggregate.SetLockerClock(otherLocker, clock)
	other, err := otherLocker.Lock(ctx, "sweep-plain")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // the orphans are older than the grace
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	gone := func(k string) bool {
		_, err := raw.Attributes(ctx, k)
		return objstore.IsNotExist(err)
	}
	waitGone := func(k string) {
		t.Helper()
		for deadline := time.Now().Add(8 * time.Second); !gone(k); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s still there after 8s of scheduled sweeps", k)
			}
		}
	}
	waitGone(orphans[1])
	time.Sleep(time.Second) // several more sweep slots
	if gone(orphans[0]) {
		t.Fatal("plain was swept while another aggregator held its lease")
	}
	if err := other.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	waitGone(orphans[0])
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(reg, "sluice_lake_sweep_deleted_objects_total"); n == 0 {
		t.Error("no sweep metrics")
	}
}
