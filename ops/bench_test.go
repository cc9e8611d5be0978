package ops

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluicehq/sluice/aggregate"
	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/objstore/objstoretest"
	"github.com/sluicehq/sluice/schema"
)

// TestBenchOps measures the evaluators end to end on a local store (the
// figures in BENCHMARKS.md): event rules over 1M committed records, read
// from their Parquet objects, and a window rule over a day of 1-minute
// windows read from the summary store. SLUICE_OPS_BENCH=1 runs it.
func TestBenchOps(t *testing.T) {
	if os.Getenv("SLUICE_OPS_BENCH") == "" {
		t.Skip("benchmark: SLUICE_OPS_BENCH=1")
	}
	ctx := context.Background()
	rcv := newReceiver(t, secretOld)

	t.Run("event rules over 1M records", func(t *testing.T) {
		b := objstoretest.NewLocal(t)
		f := newFeeder(t, b, 4)
		now := time.Now()
		for range 10 {
			f.random(100_000, now.Add(-time.Hour), now)
			f.Commit()
		}
		y := fmt.Sprintf(`
webhooks: [{name: hook, url: %q, secrets: [%q]}]
rules:
  - {name: big, table: events, when: 'amount > 99.9 && country != null', action: {webhook: hook}}
  - {name: never, table: events, when: 'event_type == "purchase" && latency_ms > 100000', action: {webhook: hook}}
`, rcv.srv.URL, secretOld)
		rs, err := ParseRules([]byte(y), "bench.yaml", schema.SampleTables(), nil)
		if err != nil {
			t.Fatal(err)
		}
		svc := newTestService(t, rs, b, nil, prometheus.NewRegistry())
		start := time.Now()
		if err := svc.EvaluateOnce(ctx, "events"); err != nil {
			t.Fatal(err)
		}
		el := time.Since(start)
		entries, _ := svc.log.List(ctx, Filter{Table: "events"})
		t.Logf("1,000,000 records x 2 rules in %s: %.0f records/s; %d firings logged and delivered",
			el.Round(time.Millisecond), 1e6/el.Seconds(), len(entries))
	})

	t.Run("window rule over a day of 1-minute windows", func(t *testing.T) {
		raw, sum := objstoretest.NewLocal(t), objstoretest.NewLocal(t)
		f := newFeeder(t, raw, 2)
		day := time.Now().UTC().Truncate(24 * time.Hour).Add(-24 * time.Hour)
		types := []string{"page_view", "click", "search", "add_to_cart", "purchase", "login", "logout", "share"}
		n := 0
		for m := range 1440 {
			at := day.Add(time.Duration(m) * time.Minute)
			for i := range 80 {
				f.event(i%2, at.Add(time.Duration(i)*700*time.Millisecond), types[i%len(types)], float64(i), int64(40+(m*7+i*13)%600))
				n++
			}
			if m%240 == 239 {
				f.Commit()
			}
		}
		f.Commit()
		agg, err := aggregate.NewService(aggregate.Config{Interval: time.Second, Lease: 2 * time.Second}, raw, sum,
			[]*schema.Table{testkit.SampleTable(t)}, "agg", slog.New(slog.DiscardHandler), nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := agg.RunOnce(ctx, testkit.SampleTable(t)); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct{ name, when string }{
			{"quiet", "latency_p99 > 100000"},
			{"slow", "latency_p99 > 560 || events > 3 * (prev_events ?? 1e18)"},
		} {
			y := fmt.Sprintf(`
webhooks: [{name: hook, url: %q, secrets: [%q]}]
rules:
  - name: %s
    table: events
    window: 1m
    group_by: [event_type]
    when: %s
    for: 2
    keep_firing_for: 1
    resolve: true
    missing_data: {no_data: ok, stalled_after: 1000h}
    action: {webhook: hook}
`, rcv.srv.URL, secretOld, c.name, c.when)
			rs, err := ParseRules([]byte(y), "bench.yaml", schema.SampleTables(), nil)
			if err != nil {
				t.Fatal(err)
			}
			svc := newTestService(t, rs, raw, sum, prometheus.NewRegistry())
			start := time.Now()
			if err := svc.EvaluateOnce(ctx, "events"); err != nil {
				t.Fatal(err)
			}
			el := time.Since(start)
			entries, _ := svc.log.List(ctx, Filter{Table: "events", Rule: c.name})
			windows := int(testutil.ToFloat64(svc.m.evaluated.WithLabelValues("events", c.name)))
			t.Logf("rule %s: %d events; %d 1-minute windows (8 groups each) in %s: %.0f windows/s; %d firings logged and delivered",
				c.name, n, windows, el.Round(time.Millisecond), float64(windows)/el.Seconds(), len(entries))
		}
	})
}
