package aggregate_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/aggregate"
	"github.com/sluicehq/sluice/ingest"
	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/internal/testkit/ingesttest"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore/objstoretest"
	"github.com/sluicehq/sluice/schema"
)

// tableWith parses the sample table with its YAML edited by edit.
func tableWith(t *testing.T, edit func(string) string) *schema.Table {
	t.Helper()
	tables, err := schema.Parse([]byte(edit(string(schema.SampleYAML))), "evolved.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return tables[0]
}

// A nullable field added to a table, and at once made a dimension of its
// rollup: objects written before it read the field as NULL, objects after
// it have values, and the summary counts both exactly.
func TestNullableFieldAddedLaterReadsAsNull(t *testing.T) {
	before := tableWith(t, func(y string) string {
		return strings.Replace(y, "      - {name: device, type: string, nullable: true}\n", "", 1)
	})
	after := tableWith(t, func(y string) string {
		return strings.Replace(y, "dimensions: [event_type, country]", "dimensions: [event_type, device]", 1)
	})
	raw := objstoretest.NewLocal(t)
	ctx := context.Background()
	w, err := ingest.NewWriter(ingest.WriterConfig{}, raw, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	base := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	write := func(tbl *schema.Table, partition string, n int, device string) {
		t.Helper()
		p, _, err := w.OpenPartition(ctx, tbl, "kafka:events", partition, ingest.StartAt(lake.Position{}, "t"))
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		for i := range n {
			v := fmt.Appendf(nil, `{"ts":%q,"event_id":"e%d","user_id":"u%d","event_type":"click","device":%q,"amount":2,"latency_ms":5,"ok":true}`,
				base.Add(time.Duration(i)*time.Second).Format(time.RFC3339Nano), i, i, device)
			p.Append(v, lake.PositionOf(int64(i)), base)
		}
		ingesttest.Commit(ctx, t, p)
	}
	write(before, "0", 30, "mobile") // the device is in the JSON but not yet in the table
	write(after, "1", 20, "mobile")
	live, err := lake.NewCommitLog(raw).LiveObjects(ctx, "events")
	if err != nil || len(live) != 2 {
		t.Fatalf("live objects %d, %v", len(live), err)
	}
	agg := aggregate.NewAggregator(after, time.Minute, base, base.Add(time.Minute))
	for _, o := range live {
		data := readAll(t, raw, o.Key)
		if err := agg.AddParquet(bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatalf("aggregate %s: %v", o.Key, err)
		}
	}
	sum := agg.Result()
	got := map[string]int64{}
	for _, row := range sum.Rows {
		got[fmt.Sprint(row.Dims[1])] += row.N
	}
	if got["<nil>"] != 30 || got["mobile"] != 20 || len(got) != 2 {
		t.Fatalf("events by device = %v, want 30 with NULL (before the field) and 20 mobile", got)
	}
}

// Compaction merges an hour whose objects predate a nullable field with
// objects that have it, into the table's newest schema; the merged hour
// aggregates exactly as its inputs did.
func TestCompactionMergesObjectsThatPredateAField(t *testing.T) {
	before := tableWith(t, func(y string) string {
		return strings.Replace(y, "      - {name: device, type: string, nullable: true}\n", "", 1)
	})
	after := tableWith(t, func(y string) string {
		return strings.Replace(y, "dimensions: [event_type, country]", "dimensions: [event_type, device]", 1)
	})
	raw := objstoretest.NewLocal(t)
	ctx := context.Background()
	w, err := ingest.NewWriter(ingest.WriterConfig{}, raw, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	base := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	var next int64
	write := func(tbl *schema.Table, n int, from time.Time) {
		t.Helper()
		p, _, err := w.OpenPartition(ctx, tbl, "kafka:events", "0", ingest.StartAt(lake.Position{}, "t"))
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		for i := range n {
			v := fmt.Appendf(nil, `{"ts":%q,"event_id":"e%d","user_id":"u%d","event_type":"click","device":"tablet","amount":2,"latency_ms":5,"ok":true}`,
				from.Add(time.Duration(i)*time.Second).Format(time.RFC3339Nano), next, next)
			p.Append(v, lake.PositionOf(next), base)
			next++
		}
		ingesttest.Commit(ctx, t, p)
	}
	write(before, 40, base)
	write(before, 35, base.Add(time.Minute))
	write(after, 25, base.Add(2*time.Minute))
	write(after, 1, base.Add(2*time.Hour)) // closes the hour (an object of its own hour)
	log := lake.NewCommitLog(raw)
	c, err := aggregate.NewCompactor(aggregate.CompactorConfig{TargetBytes: 64 << 20, CloseDelay: time.Minute}, raw, log, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.CompactTable(ctx, after, base.Add(3*time.Hour))
	if err != nil {
		t.Fatalf("compact: %v", err)
	}
	all, err := lake.NewCommitLog(raw).LiveObjects(ctx, "events")
	if err != nil {
		t.Fatal(err)
	}
	var live []lake.LiveObject
	for _, o := range all {
		if strings.Contains(o.Key, "/hour=10/") {
			live = append(live, o)
		}
	}
	if len(live) != 1 || live[0].Compaction == "" || live[0].Rows != 100 {
		t.Fatalf("after compaction (%+v): %d live objects, want one compacted object of 100 rows: %+v", res, len(live), live)
	}
	agg := aggregate.NewAggregator(after, time.Hour, base, base.Add(time.Hour))
	data := readAll(t, raw, live[0].Key)
	if err := agg.AddParquet(bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, row := range agg.Result().Rows {
		got[fmt.Sprint(row.Dims[1])] += row.N
	}
	if got["<nil>"] != 75 || got["tablet"] != 25 || len(got) != 2 {
		t.Fatalf("events by device after compaction = %v, want 75 NULL and 25 tablet", got)
	}
}

// A measure and a window added to the rollup: summaries written in the
// earlier shape are computed again in the new one (from raw data, then the
// new window from the finer ones), and every window is exact.
func TestMeasureAndWindowAddedToTheRollup(t *testing.T) {
	before := testkit.SampleTable(t)
	after := tableWith(t, func(y string) string {
		y = strings.Replace(y, "windows: [1m, 5m, 1h, 1d]", "windows: [1m, 5m, 15m, 1h, 1d]", 1)
		return strings.Replace(y, "        - {name: events, kind: count}\n",
			"        - {name: events, kind: count}\n        - {name: latency_max, kind: max, field: latency_ms}\n", 1)
	})
	raw, summaries := objstoretest.NewLocal(t), objstoretest.NewLocal(t)
	ctx := context.Background()
	base := time.Date(2026, 2, 1, 8, 0, 0, 0, time.UTC)
	f := newFeeder(t, raw, 2)
	f.add(3000, base, base.Add(2*time.Hour))
	f.add(5, base.Add(5*time.Hour), base.Add(5*time.Hour+time.Minute)) // moves the watermark past them
	f.Commit()
	svc := newService(t, raw, summaries, "a", prometheus.NewRegistry())
	if st, err := svc.RunOnce(ctx, before); err != nil || st.Computed == 0 {
		t.Fatalf("first run (old rollup): %+v, %v", st, err)
	}
	svc2, err := aggregate.NewService(aggregate.Config{Interval: 200 * time.Millisecond, Lease: 2 * time.Second}, raw, summaries,
		[]*schema.Table{after}, "b", slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := svc2.RunOnce(ctx, after)
	if err != nil {
		t.Fatalf("run with the new rollup: %v", err)
	}
	if st.Computed == 0 {
		t.Fatalf("nothing recomputed for the new rollup: %+v", st)
	}
	if n := checkAgainstRaw(t, after, raw, summaries, nil); n == 0 {
		t.Fatal("no window checked")
	}
	for _, w := range []string{"15m", "1h"} {
		if objs := listObjects(t, summaries, "events/"+w+"/"); len(objs) == 0 {
			t.Errorf("no %s summaries", w)
		}
	}
}
