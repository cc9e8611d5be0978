package aggregate

import (
	"fmt"
	"testing"
	"time"

	"github.com/sluicehq/sluice/lake"
)

func TestPlanCompaction(t *testing.T) {
	h := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Hour) }
	// obj is a raw object of hour i, n KiB, named so key order is name order.
	obj := func(i int, name string, kib int64) lake.LiveObject {
		hour := h(i)
		return lake.LiveObject{CommittedObject: lake.CommittedObject{
			Key: lake.RawHourPrefix("events", hour) + name + ".parquet", Kind: lake.KindRaw, Rows: kib, Size: kib << 10,
			MinEventTimeMicros: hour.Add(time.Minute).UnixMicro(), MaxEventTimeMicros: hour.Add(59 * time.Minute).UnixMicro()}}
	}
	many := func(i, n int, kib int64) []lake.LiveObject {
		var out []lake.LiveObject
		for k := range n {
			out = append(out, obj(i, fmt.Sprintf("o%03d", k), kib))
		}
		return out
	}
	cfg := CompactorConfig{TargetBytes: 100 << 10, MaxGroupsPerRun: 10, MaxGroupObjects: 100}.WithDefaults()
	misplaced := obj(0, "x", 10)
	misplaced.Key = lake.RawHourPrefix("events", h(1)) + "x.parquet"
	spanning := obj(0, "y", 10)
	spanning.MaxEventTimeMicros = h(1).UnixMicro()

	cases := []struct {
		name         string
		live         []lake.LiveObject
		closedBefore time.Time
		cfg          CompactorConfig
		want         [][]int64 // per group, sizes in KiB, in order
		wantHours    []int
	}{
		{name: "nothing", closedBefore: h(5), cfg: cfg},
		{name: "single object hour is skipped", live: many(0, 1, 10), closedBefore: h(5), cfg: cfg},
		{name: "two small objects", live: many(0, 2, 10), closedBefore: h(5), cfg: cfg, want: [][]int64{{10, 10}}, wantHours: []int{0}},
		{name: "open hour is skipped", live: many(0, 5, 10), closedBefore: h(1).Add(-time.Second), cfg: cfg},
		{name: "hour ending exactly at the bound is closed", live: many(0, 3, 10), closedBefore: h(1), cfg: cfg, want: [][]int64{{10, 10, 10}}, wantHours: []int{0}},
		{name: "objects at half the target or more are left alone",
			live: append(many(0, 3, 50), obj(0, "p", 10)), closedBefore: h(5), cfg: cfg},
		{name: "large and small mixed: only the small merge",
			live: append(many(0, 2, 80), obj(0, "p", 10), obj(0, "q", 20)), closedBefore: h(5), cfg: cfg,
			want: [][]int64{{10, 20}}, wantHours: []int{0}},
		{name: "2.4 targets make two equal groups",
			live: many(0, 24, 10), closedBefore: h(5), cfg: cfg,
			want: [][]int64{{10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10}, {10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10}}, wantHours: []int{0, 0}},
		{name: "2.5 targets make three",
			live: many(0, 25, 10), closedBefore: h(5), cfg: cfg,
			want: [][]int64{{10, 10, 10, 10, 10, 10, 10, 10, 10}, {10, 10, 10, 10, 10, 10, 10, 10, 10}, {10, 10, 10, 10, 10, 10, 10}}, wantHours: []int{0, 0, 0}},
		{name: "a last single object joins the group before",
			live: many(0, 7, 40), closedBefore: h(5), cfg: cfg, want: [][]int64{{40, 40, 40}, {40, 40, 40, 40}}, wantHours: []int{0, 0}},
		{name: "oldest hours first, bounded per run",
			live:         append(append(many(2, 2, 10), many(0, 2, 10)...), many(1, 2, 10)...),
			closedBefore: h(5), cfg: func() CompactorConfig { c := cfg; c.MaxGroupsPerRun = 2; return c }(),
			want: [][]int64{{10, 10}, {10, 10}}, wantHours: []int{0, 1}},
		{name: "object count per group is bounded",
			live: many(0, 5, 1), closedBefore: h(5), cfg: func() CompactorConfig { c := cfg; c.MaxGroupObjects = 2; return c }(),
			want: [][]int64{{1, 1}, {1, 1}}, wantHours: []int{0, 0}},
		{name: "compacted objects teach the bytes per row",
			live: append(many(0, 20, 10), func() lake.LiveObject {
				o := obj(1, "compacted", 80)
				o.Rows, o.Compaction = 800, "rec"
				return o
			}()), closedBefore: h(5), cfg: cfg,
			want: [][]int64{{10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10}}, wantHours: []int{0}},
		{name: "without them, input sizes",
			live: many(0, 20, 10), closedBefore: h(5), cfg: cfg,
			want: [][]int64{{10, 10, 10, 10, 10, 10, 10, 10, 10, 10}, {10, 10, 10, 10, 10, 10, 10, 10, 10, 10}}, wantHours: []int{0, 0}},
		{name: "misplaced and hour-spanning objects are never touched",
			live: []lake.LiveObject{misplaced, spanning, obj(0, "a", 10)}, closedBefore: h(5), cfg: cfg},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			groups := PlanCompaction("events", tc.live, tc.closedBefore, tc.cfg)
			if len(groups) != len(tc.want) {
				t.Fatalf("%d groups, want %d: %+v", len(groups), len(tc.want), groups)
			}
			for i, g := range groups {
				var sizes []int64
				var bytes, rows int64
				for _, o := range g.Objects {
					sizes = append(sizes, o.Size>>10)
					bytes += o.Size
					rows += o.Rows
				}
				if fmt.Sprint(sizes) != fmt.Sprint(tc.want[i]) {
					t.Errorf("group %d sizes %v, want %v", i, sizes, tc.want[i])
				}
				if !g.Hour.Equal(h(tc.wantHours[i])) {
					t.Errorf("group %d hour %s, want %s", i, g.Hour, h(tc.wantHours[i]))
				}
				if g.Bytes != bytes || g.Rows != rows {
					t.Errorf("group %d totals %d bytes %d rows, objects sum to %d, %d", i, g.Bytes, g.Rows, bytes, rows)
				}
			}
		})
	}
}

// The hour closes on the committed watermark, never ahead of the clock.
func TestCompactionClosedBefore(t *testing.T) {
	cfg := CompactorConfig{CloseDelay: 10 * time.Minute}.WithDefaults()
	recAt := func(part string, event time.Time) lake.CommitRecord {
		return lake.CommitRecord{Table: "events", Source: "kafka:events", Partition: part, CommittedAt: t0,
			Objects: []lake.CommittedObject{{Key: "events/x", Kind: lake.KindRaw, Rows: 1,
				MinEventTimeMicros: event.UnixMicro(), MaxEventTimeMicros: event.UnixMicro()}}}
	}
	cases := []struct {
		name   string
		recs   []lake.CommitRecord
		now    time.Time
		want   time.Time
		wantOK bool
	}{
		{name: "no data", now: t0},
		{name: "slowest partition holds it back", recs: []lake.CommitRecord{recAt("0", t0.Add(3*time.Hour)), recAt("1", t0.Add(time.Hour))},
			now: t0.Add(5 * time.Hour), want: t0.Add(time.Hour + time.Microsecond - 10*time.Minute), wantOK: true},
		{name: "future event times wait for the clock", recs: []lake.CommitRecord{recAt("0", t0.Add(3*time.Hour))},
			now: t0, want: t0.Add(-10 * time.Minute), wantOK: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := compactionClosedBefore(tc.recs, tc.now, cfg)
			if ok != tc.wantOK || !got.Equal(tc.want) {
				t.Fatalf("= %s, %v; want %s, %v", got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestCompactorConfigValidate(t *testing.T) {
	cases := []struct {
		name string
		cfg  CompactorConfig
		ok   bool
	}{
		{"defaults", CompactorConfig{}, true},
		{"tiny target", CompactorConfig{TargetBytes: 10}, false},
		{"fraction above one", CompactorConfig{SmallFraction: 1.5}, false},
		{"negative delay", CompactorConfig{CloseDelay: -time.Second}, false},
		{"one object per group", CompactorConfig{MaxGroupObjects: 1}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.cfg.WithDefaults().Validate(); (err == nil) != tc.ok {
				t.Fatalf("Validate = %v, want ok %v", err, tc.ok)
			}
		})
	}
}
