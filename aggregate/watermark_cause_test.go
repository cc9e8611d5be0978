package aggregate

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluicehq/sluice/lake"
)

// TestWatermarkCause names, for each cause, a table state that produces it,
// and checks that WatermarkHeld agrees with Watermark on the value.
func TestWatermarkCause(t *testing.T) {
	const late = 30 * time.Second
	const idle = 5 * time.Minute
	tests := []struct {
		name string
		recs []lake.CommitRecord
		now  time.Time
		want WatermarkCause
		ok   bool
		wmIs time.Time // checked when ok
	}{
		{
			name: "caught-up partitions committing: the lateness",
			recs: []lake.CommitRecord{
				rec("0", 0, 10*time.Minute, [2]time.Duration{0, 9*time.Minute + 50*time.Second}),
				rec("1", 0, 10*time.Minute, [2]time.Duration{0, 9*time.Minute + 40*time.Second}),
			},
			now:  t0.Add(10 * time.Minute),
			want: HeldByLateness, ok: true,
			wmIs: t0.Add(9*time.Minute + 40*time.Second + time.Microsecond - late),
		},
		{
			name: "the slowest partition is behind the broker",
			recs: []lake.CommitRecord{
				rec("0", 0, 10*time.Minute, [2]time.Duration{0, 9*time.Minute + 50*time.Second}),
				withLag(rec("1", 0, 10*time.Minute, [2]time.Duration{0, 2 * time.Minute}), 50_000),
			},
			now:  t0.Add(10 * time.Minute),
			want: HeldByLaggingPartition, ok: true,
			wmIs: t0.Add(2*time.Minute + time.Microsecond - late),
		},
		{
			name: "a stuck partition with lag, silent for an hour, is still lagging, not idle",
			recs: []lake.CommitRecord{
				rec("0", 0, 70*time.Minute, [2]time.Duration{0, 70 * time.Minute}),
				withLag(rec("1", 0, 10*time.Minute, [2]time.Duration{0, 9 * time.Minute}), 7),
			},
			now:  t0.Add(70 * time.Minute),
			want: HeldByLaggingPartition, ok: true,
			wmIs: t0.Add(9*time.Minute + time.Microsecond - late),
		},
		{
			name: "a lagging partition tied with a caught-up one is the one named",
			recs: []lake.CommitRecord{
				rec("0", 0, 10*time.Minute, [2]time.Duration{0, 5 * time.Minute}),
				withLag(rec("1", 0, 10*time.Minute, [2]time.Duration{0, 5 * time.Minute}), 3),
				rec("2", 0, 10*time.Minute, [2]time.Duration{0, 5 * time.Minute}),
			},
			now:  t0.Add(10 * time.Minute),
			want: HeldByLaggingPartition, ok: true,
			wmIs: t0.Add(5*time.Minute + time.Microsecond - late),
		},
		{
			name: "a caught-up partition quiet for more than half the idle timeout",
			recs: []lake.CommitRecord{
				rec("0", 0, 14*time.Minute, [2]time.Duration{0, 14 * time.Minute}),
				rec("1", 0, 10*time.Minute, [2]time.Duration{0, 10 * time.Minute}),
			},
			now:  t0.Add(14 * time.Minute),
			want: HeldByIdleWait, ok: true,
			wmIs: t0.Add(10*time.Minute + time.Microsecond - late),
		},
		{
			name: "a quiet partition tied with an active one is the one named",
			recs: []lake.CommitRecord{
				rec("0", 0, 10*time.Minute, [2]time.Duration{0, 10 * time.Minute}),
				rec("1", 0, 14*time.Minute, [2]time.Duration{0, 10 * time.Minute}),
				rec("2", 0, 10*time.Minute, [2]time.Duration{0, 10 * time.Minute}),
				rec("3", 0, 14*time.Minute, [2]time.Duration{0, 14 * time.Minute}),
			},
			now:  t0.Add(14 * time.Minute),
			want: HeldByIdleWait, ok: true,
			wmIs: t0.Add(10*time.Minute + time.Microsecond - late),
		},
		{
			name: "quiet for less than half the idle timeout is still the lateness",
			recs: []lake.CommitRecord{
				rec("0", 0, 12*time.Minute, [2]time.Duration{0, 12 * time.Minute}),
				rec("1", 0, 10*time.Minute, [2]time.Duration{0, 10 * time.Minute}),
			},
			now:  t0.Add(12 * time.Minute),
			want: HeldByLateness, ok: true,
			wmIs: t0.Add(10*time.Minute + time.Microsecond - late),
		},
		{
			name: "once idle, the quiet partition no longer holds it",
			recs: []lake.CommitRecord{
				rec("0", 0, 16*time.Minute, [2]time.Duration{0, 16 * time.Minute}),
				rec("1", 0, 10*time.Minute, [2]time.Duration{0, 10 * time.Minute}),
			},
			now:  t0.Add(16*time.Minute + time.Second),
			want: HeldByLateness, ok: true,
			wmIs: t0.Add(16*time.Minute + time.Microsecond - late),
		},
		{
			name: "records dated in the future: the clock caps it",
			recs: []lake.CommitRecord{rec("0", 0, time.Minute, [2]time.Duration{0, 23 * time.Hour})},
			now:  t0.Add(10 * time.Minute),
			want: HeldByClock, ok: true,
			wmIs: t0.Add(10*time.Minute - late),
		},
		{
			name: "a new partition opened on a backlog, without data yet",
			recs: []lake.CommitRecord{
				rec("0", 0, time.Minute, [2]time.Duration{0, 10 * time.Minute}),
				withLag(rec("1", 0, time.Minute), 1000),
			},
			now:  t0.Add(time.Hour),
			want: HeldByBacklog, ok: false,
		},
		{
			name: "nothing committed",
			now:  t0,
			want: HeldByNoData, ok: false,
		},
		{
			name: "every partition idle",
			recs: []lake.CommitRecord{
				rec("0", 0, time.Minute, [2]time.Duration{0, time.Minute}),
				rec("1", 0, 10*time.Minute), // a link with nothing to read, much later
			},
			now:  t0.Add(time.Hour),
			want: HeldByNoData, ok: false,
		},
	}
	seen := map[WatermarkCause]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wm, cause, ok := WatermarkHeld(tt.recs, late, idle, tt.now)
			if cause != tt.want || ok != tt.ok {
				t.Fatalf("WatermarkHeld = %s, %s, %v; want cause %s, ok %v", wm, cause, ok, tt.want, tt.ok)
			}
			if ok && !wm.Equal(tt.wmIs) {
				t.Fatalf("watermark %s, want %s", wm, tt.wmIs)
			}
			if wm2, ok2 := Watermark(tt.recs, late, idle, tt.now); ok2 != ok || !wm2.Equal(wm) {
				t.Fatalf("Watermark = %s, %v; WatermarkHeld = %s, %v", wm2, ok2, wm, ok)
			}
			seen[cause] = true
		})
	}
	for _, c := range WatermarkCauses {
		if !seen[c] {
			t.Errorf("no case produces cause %s", c)
		}
	}
}

// TestObserveWatermark checks the published series: one cause at 1, the
// others at 0, and a lag that keeps growing from the last watermark while
// there is none.
func TestObserveWatermark(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	wm := t0.Add(-time.Minute)
	m.observeWatermark("events", wm, HeldByLaggingPartition, true, t0)
	for _, c := range WatermarkCauses {
		want := 0.0
		if c == HeldByLaggingPartition {
			want = 1
		}
		if got := testutil.ToFloat64(m.heldBy.WithLabelValues("events", string(c))); got != want {
			t.Errorf("held_by{cause=%s} = %v, want %v", c, got, want)
		}
	}
	if got := testutil.ToFloat64(m.watermarkLag.WithLabelValues("events")); got != 60 {
		t.Errorf("lag = %v, want 60", got)
	}
	m.observeWatermark("events", time.Time{}, HeldByBacklog, false, t0.Add(10*time.Minute))
	if got := testutil.ToFloat64(m.heldBy.WithLabelValues("events", string(HeldByBacklog))); got != 1 {
		t.Errorf("held_by{cause=backlog_genesis} = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.heldBy.WithLabelValues("events", string(HeldByLaggingPartition))); got != 0 {
		t.Errorf("held_by{cause=lagging_partition} = %v, want 0", got)
	}
	if got := testutil.ToFloat64(m.watermarkLag.WithLabelValues("events")); got != 660 {
		t.Errorf("lag without a watermark = %v, want 660 (from the last one)", got)
	}
	if got := testutil.ToFloat64(m.watermark.WithLabelValues("events")); got != float64(wm.Unix()) {
		t.Errorf("watermark = %v, want the last one %v", got, wm.Unix())
	}
	// A table that never had a watermark publishes no lag.
	m.observeWatermark("other", time.Time{}, HeldByNoData, false, t0)
	if n := testutil.CollectAndCount(m.watermarkLag); n != 1 {
		t.Errorf("%d lag series, want 1 (no lag for a table without a watermark)", n)
	}
}
