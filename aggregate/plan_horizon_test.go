package aggregate

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/sluicehq/sluice/schema"
)

// horizonBase is a pinned instant, deliberately not on any window boundary,
// so the tests below do not depend on when they run.
var horizonBase = time.Date(2026, 11, 26, 10, 17, 23, 456789000, time.UTC)

// rollupWindowSizes are window sizes a rollup accepts, from the finest the
// validation allows up to its longest: every one is checked to parse.
var rollupWindowSizes = []time.Duration{
	time.Second, 10 * time.Second, time.Minute, 5 * time.Minute, 15 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour, 6 * time.Hour, 12 * time.Hour,
	24 * time.Hour, 7 * 24 * time.Hour, 30 * 24 * time.Hour, 366 * 24 * time.Hour,
}

// TestRollupWindowSizesAreAccepted keeps rollupWindowSizes honest: each is
// a window a table may declare (after 1s as the finest).
func TestRollupWindowSizesAreAccepted(t *testing.T) {
	for _, w := range rollupWindowSizes {
		windows := "[1s]"
		if w != time.Second {
			windows = "[1s, " + WindowName(w) + "]"
		}
		yaml := `
tables:
  - name: t
    event_time: {field: ts}
    fields: [{name: ts, type: timestamp}]
    rollup:
      windows: ` + windows + `
      measures: [{name: n, kind: count}]
`
		tables, err := schema.Parse([]byte(yaml), "sizes.yaml")
		if err != nil {
			t.Fatalf("window %s: %v", WindowName(w), err)
		}
		if got := tables[0].Rollup.Windows; got[len(got)-1] != w {
			t.Fatalf("window %s parsed as %v", WindowName(w), got)
		}
	}
}

// TestDecideAtTheHorizon pins the late horizon to the window's end: a
// window that changed is recomputed while its end lies after watermark -
// horizon and frozen (new inputs counted as too late) from the instant its
// end reaches it. Checked at ±1µs around that instant for every window
// size and several horizons, so that measuring from the window's start (which
// freezes 1h and 1d windows up to a day early) fails here.
func TestDecideAtTheHorizon(t *testing.T) {
	a := Link{Source: "kafka:events", Partition: "0", Seq: 1}
	b := Link{Source: "kafka:events", Partition: "1", Seq: 1}
	state := WindowState{Inputs: InputsHash([]Link{a}), Seen: InputsHash([]Link{a}), Links: []Link{a}}
	for _, w := range rollupWindowSizes {
		for _, horizon := range []time.Duration{time.Second, time.Hour, 2 * time.Hour, 24 * time.Hour} {
			start := floorTo(horizonBase.UnixMicro(), w.Microseconds())
			end := time.UnixMicro(start + w.Microseconds())
			for _, tc := range []struct {
				name string
				wm   time.Time // watermark
				want Action
			}{
				{"end 1µs inside the horizon", end.Add(horizon - time.Microsecond), Compute},
				{"end exactly at the horizon", end.Add(horizon), CountLate},
				{"end 1µs past the horizon", end.Add(horizon + time.Microsecond), CountLate},
			} {
				t.Run(fmt.Sprintf("%s/horizon %s/%s", WindowName(w), horizon, tc.name), func(t *testing.T) {
					windows := map[int64][]Link{start: {a, b}}
					ds := Decide(windows, map[int64]WindowState{start: state}, w, tc.wm, horizon)
					if len(ds) != 1 || ds[0].Start != start {
						t.Fatalf("Decide = %+v, want one decision for %s", ds, time.UnixMicro(start).UTC())
					}
					if ds[0].Action != tc.want {
						t.Fatalf("window [%s, %s), watermark %s, horizon %s: action %v, want %v",
							time.UnixMicro(start).UTC(), end.UTC(), tc.wm.UTC(), horizon, ds[0].Action, tc.want)
					}
					var wantNew []Link
					if tc.want == CountLate {
						wantNew = []Link{b}
					}
					if !slices.Equal(ds[0].NewLinks, wantNew) {
						t.Fatalf("new links %v, want %v", ds[0].NewLinks, wantNew)
					}
				})
			}
		}
	}
}
