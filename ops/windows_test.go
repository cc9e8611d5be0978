package ops

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/aggregate"
	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/objstore/objstoretest"
	"github.com/sluicehq/sluice/schema"
)

// windowBench is a lake with summaries: events go in through the real
// ingest writer, the real aggregator summarises them, and a fresh ops
// service (a restart every time) evaluates the window rules.
type windowBench struct {
	t        *testing.T
	raw, sum *objstore.Local
	f        *feeder
	agg      *aggregate.Service
	rs       *RuleSet
	rcv      *receiver
	t0       time.Time
}

func newWindowBench(t *testing.T, rules string, t0 time.Time) *windowBench {
	wb := &windowBench{t: t, raw: objstoretest.NewLocal(t), sum: objstoretest.NewLocal(t), t0: t0}
	wb.f = newFeeder(t, wb.raw, 1)
	agg, err := aggregate.NewService(aggregate.Config{Interval: time.Second, Lease: 2 * time.Second}, wb.raw, wb.sum,
		[]*schema.Table{testkit.SampleTable(t)}, "agg", slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	wb.agg = agg
	wb.rcv = newReceiver(t, secretOld)
	y := fmt.Sprintf(`
webhooks:
  - {name: hook, url: %s, secrets: [%q]}
rules:
%s`, wb.rcv.srv.URL, secretOld, rules)
	wb.rs, err = ParseRules([]byte(y), "test.yaml", schema.SampleTables(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return wb
}

// minute feeds minute i: for each event type given, one event at second
// 10 with that amount, and a page_view heartbeat at second 45 (which
// moves the watermark past the previous minute's end).
func (wb *windowBench) minute(i int, amounts map[string]float64) {
	at := wb.t0.Add(time.Duration(i) * time.Minute)
	for _, et := range slices.Sorted(mapsKeys(amounts)) {
		wb.f.event(0, at.Add(10*time.Second), et, amounts[et], 10)
	}
	wb.f.event(0, at.Add(45*time.Second), "page_view", 0, 10)
	wb.f.Commit()
}

func mapsKeys(m map[string]float64) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// evaluate runs the aggregator, then a new ops service once.
func (wb *windowBench) evaluate() {
	ctx := context.Background()
	if _, err := wb.agg.RunOnce(ctx, testkit.SampleTable(wb.t)); err != nil {
		wb.t.Fatal(err)
	}
	svc := newTestService(wb.t, wb.rs, wb.raw, wb.sum, prometheus.NewRegistry())
	if err := svc.EvaluateOnce(ctx, "events"); err != nil {
		wb.t.Fatal(err)
	}
}

// notices lists the log's firings of rule as "state@minute group".
func (wb *windowBench) notices(rule string) []string {
	all, err := NewActionLog(wb.raw).List(context.Background(), Filter{Table: "events", Rule: rule})
	if err != nil {
		wb.t.Fatal(err)
	}
	var out []string
	for _, e := range all {
		m := -1
		if e.WindowStart != nil {
			m = int(e.WindowStart.Sub(wb.t0) / time.Minute)
		}
		out = append(out, fmt.Sprintf("%s@%d %v", e.State, m, e.Group["event_type"]))
	}
	slices.Sort(out)
	return out
}

func (wb *windowBench) expect(rule string, want ...string) {
	wb.t.Helper()
	slices.Sort(want)
	if got := wb.notices(rule); !slices.Equal(got, want) {
		wb.t.Fatalf("%s fired %q\nwant %q", rule, got, want)
	}
}

// Threshold with for and keep_firing_for, evaluated by a new process after
// every minute (a restart in the middle of `for` and while firing): it
// fires once when the condition held for 2 windows and resolves once after
// 2 clear windows; late data that makes an earlier closed window breach is
// followed (the recomputed window fires; what was sent stays sent).
func TestWindowThresholdForKeepFiringRestartLate(t *testing.T) {
	t.Parallel()
	t0 := time.Now().UTC().Truncate(time.Hour).Add(-time.Hour)
	wb := newWindowBench(t, `
  - name: big_clicks
    table: events
    window: 1m
    group_by: [event_type]
    when: amount_max > 80
    for: 2
    keep_firing_for: 1
    resolve: true
    missing_data: {no_data: keep, stalled_after: 100h}
    action: {webhook: hook}
`, t0)
	clicks := []float64{90, 10, 90, 90, 90, 10, 90, 10, 10, 10}
	for i, v := range clicks {
		wb.minute(i, map[string]float64{"click": v})
		wb.evaluate()
	}
	wb.minute(len(clicks), nil)
	wb.evaluate()
	wb.evaluate()
	wb.expect("big_clicks", "firing@3 click", "resolved@8 click")

	// Late data in closed window 1 (within the late horizon): the series
	// is evaluated again from window 1, which now breaches: firing@1.
	wb.f.event(0, t0.Add(time.Minute+20*time.Second), "click", 95, 10)
	wb.f.Commit()
	wb.evaluate()
	wb.expect("big_clicks", "firing@1 click", "firing@3 click", "resolved@8 click")
	wb.evaluate()
	wb.expect("big_clicks", "firing@1 click", "firing@3 click", "resolved@8 click")

	// Every firing was delivered under its id.
	deadline := time.Now().Add(5 * time.Second)
	for len(distinct(wb.rcv.seen())) < 3 && time.Now().Before(deadline) {
		wb.evaluate()
	}
	if n := len(distinct(wb.rcv.seen())); n != 3 {
		t.Fatalf("%d distinct deliveries, want 3", n)
	}
}

// Absence: a group seen before that has no row in a closed window fires,
// and resolves when it comes back.
func TestWindowAbsence(t *testing.T) {
	t.Parallel()
	t0 := time.Now().UTC().Truncate(time.Hour).Add(-time.Hour)
	wb := newWindowBench(t, `
  - name: no_search
    table: events
    window: 1m
    group_by: [event_type]
    absent: true
    resolve: true
    missing_data: {stalled_after: 100h}
    action: {webhook: hook}
`, t0)
	present := []bool{true, true, true, false, false, false, true, true}
	for i, p := range present {
		m := map[string]float64{}
		if p {
			m["search"] = 1
		}
		wb.minute(i, m)
		wb.evaluate()
	}
	wb.minute(len(present), map[string]float64{"search": 1})
	wb.evaluate()
	wb.expect("no_search", "firing@3 search", "resolved@6 search")
}

// A stalled watermark (nothing committed for longer than stalled_after) is
// reported once as stalled and never as "no data": windows the watermark
// has not passed are not evaluated, so absence does not fire.
func TestWindowStalledWatermarkIsNotNoData(t *testing.T) {
	t.Parallel()
	t0 := time.Now().UTC().Truncate(time.Hour).Add(-3 * time.Hour)
	wb := newWindowBench(t, `
  - name: quiet
    table: events
    window: 1m
    absent: true
    missing_data: {stalled_after: 1m}
    action: {webhook: hook}
`, t0)
	for i := range 4 {
		wb.minute(i, map[string]float64{"click": 1})
	}
	for range 3 {
		wb.evaluate()
	}
	// The source is 3h behind the clock: stalled, once; every window the
	// watermark passed had data, so no absence.
	wb.expect("quiet", "stalled@2 <nil>")
}

// The no-data policy: a group seen before without a row in a closed
// window counts as breaching (stays firing) or ok (resolves).
func TestWindowNoDataPolicy(t *testing.T) {
	t.Parallel()
	t0 := time.Now().UTC().Truncate(time.Hour).Add(-time.Hour)
	rule := func(name, policy string) string {
		return fmt.Sprintf(`
  - name: %s
    table: events
    window: 1m
    group_by: [event_type]
    when: amount_max > 80
    for: 2
    resolve: true
    missing_data: {no_data: %s, stalled_after: 100h}
    action: {webhook: hook}
`, name, policy)
	}
	wb := newWindowBench(t, rule("breaching", NoDataBreaching)+rule("ok", NoDataOK), t0)
	for i, m := range []map[string]float64{{"click": 90}, {"click": 90}, {}, {}, {"click": 10}, {}} {
		wb.minute(i, m)
		wb.evaluate()
	}
	wb.expect("breaching", "firing@1 click", "resolved@4 click")
	wb.expect("ok", "firing@1 click", "resolved@2 click")
}

// Two evaluators at once on a window rule (no lease: both evaluate every
// window, racing on the rule's state): each transition is logged once, and
// every delivery carries the id of a logged firing.
func TestWindowTwoEvaluatorsAtOnce(t *testing.T) {
	t.Parallel()
	t0 := time.Now().UTC().Truncate(time.Hour).Add(-time.Hour)
	wb := newWindowBench(t, `
  - name: big_clicks
    table: events
    window: 1m
    group_by: [event_type]
    when: amount_max > 80
    for: 2
    resolve: true
    missing_data: {stalled_after: 100h}
    action: {webhook: hook}
`, t0)
	ctx := context.Background()
	clicks := []float64{90, 90, 10, 90, 90, 90, 10, 10}
	for i := range len(clicks) + 1 {
		m := map[string]float64{}
		if i < len(clicks) {
			m["click"] = clicks[i]
		}
		wb.minute(i, m)
		if _, err := wb.agg.RunOnce(ctx, testkit.SampleTable(t)); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for range 2 {
			svc := newTestService(t, wb.rs, wb.raw, wb.sum, prometheus.NewRegistry())
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := svc.EvaluateOnce(ctx, "events"); err != nil && !errors.Is(err, objstore.ErrChanged) && !objstore.IsExists(err) {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
	}
	wb.evaluate()
	wb.expect("big_clicks", "firing@1 click", "resolved@2 click", "firing@4 click", "resolved@6 click")
	all, err := NewActionLog(wb.raw).List(ctx, Filter{Table: "events"})
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, e := range all {
		ids[e.ID] = true
	}
	for _, c := range wb.rcv.seen() {
		if !ids[c.id] {
			t.Fatalf("delivery %s is not a logged firing", c.id)
		}
	}
	if n := len(distinct(wb.rcv.seen())); n != len(ids) {
		t.Fatalf("%d firings delivered of %d logged", n, len(ids))
	}
}
