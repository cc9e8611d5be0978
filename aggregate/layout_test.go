package aggregate

import (
	"testing"
	"time"
)

// TestSummaryLayout pins where summaries live, which readers outside
// Sluice (DuckDB, Spark, Athena) depend on: windows shorter than an hour
// share one object per hour, longer ones one per day (UTC).
func TestSummaryLayout(t *testing.T) {
	at := time.Date(2026, 11, 26, 10, 17, 0, 0, time.UTC)
	for _, tc := range []struct {
		w    time.Duration
		unit time.Duration
		key  string
	}{
		{time.Second, time.Hour, "events/1s/dt=2026-11-26/hour=10.parquet"},
		{time.Minute, time.Hour, "events/1m/dt=2026-11-26/hour=10.parquet"},
		{59 * time.Minute, time.Hour, "events/59m/dt=2026-11-26/hour=10.parquet"},
		{time.Hour, 24 * time.Hour, "events/1h/dt=2026-11-26/day.parquet"},
		{6 * time.Hour, 24 * time.Hour, "events/6h/dt=2026-11-26/day.parquet"},
		{24 * time.Hour, 24 * time.Hour, "events/1d/dt=2026-11-26/day.parquet"},
		{7 * 24 * time.Hour, 24 * time.Hour, "events/7d/dt=2026-11-26/day.parquet"},
	} {
		if got := Unit(tc.w); got != tc.unit {
			t.Errorf("Unit(%s) = %s, want %s", tc.w, got, tc.unit)
		}
		if got := SummaryKey("events", tc.w, at.Truncate(tc.unit)); got != tc.key {
			t.Errorf("SummaryKey(%s) = %q, want %q", tc.w, got, tc.key)
		}
	}
}

// TestFloorTo: window starts floor toward minus infinity, also before the
// epoch, where integer division truncates toward zero.
func TestFloorTo(t *testing.T) {
	for _, tc := range []struct{ t, step, want int64 }{
		{0, 10, 0}, {9, 10, 0}, {10, 10, 10}, {19, 10, 10},
		{-1, 10, -10}, {-10, 10, -10}, {-11, 10, -20},
	} {
		if got := floorTo(tc.t, tc.step); got != tc.want {
			t.Errorf("floorTo(%d, %d) = %d, want %d", tc.t, tc.step, got, tc.want)
		}
	}
}
