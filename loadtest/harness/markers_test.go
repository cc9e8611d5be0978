package harness

import (
	"testing"
	"time"

	"github.com/sluicehq/sluice/schema"
)

// The end-of-run markers close every window size whose closing watermark
// stays within the late horizon of the last real events, and no more.
func TestClosingMarkers(t *testing.T) {
	r := schema.SampleTables()[0].Rollup // 1m 5m 1h 1d; lateness 30s; horizon 2h
	day := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		name     string
		lastReal time.Time
		lateBy   time.Duration
		want     time.Time
	}{
		{name: "late in the day: the day closes", lastReal: day.Add(23*time.Hour + 5*time.Second), lateBy: 3 * time.Minute,
			want: day.Add(24*time.Hour + 31*time.Second)},
		{name: "mid-day: the hour closes, the day does not", lastReal: day.Add(10*time.Hour + 5*time.Second), lateBy: 3 * time.Minute,
			want: day.Add(11*time.Hour + 31*time.Second)},
		{name: "late events reaching far back: only 5m", lastReal: day.Add(10*time.Hour + 5*time.Second), lateBy: 90 * time.Minute,
			want: day.Add(10*time.Hour + 5*time.Minute + 31*time.Second)},
		{name: "later than the horizon allows: the finest window anyway", lastReal: day.Add(10*time.Hour + 5*time.Second), lateBy: 2 * time.Hour,
			want: day.Add(10*time.Hour + 5*time.Second + time.Minute + 31*time.Second)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := closingMarkers(r, tc.lastReal, tc.lateBy); !got.Equal(tc.want) {
				t.Fatalf("markers at %s, want %s", got, tc.want)
			}
		})
	}
}
