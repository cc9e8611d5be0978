package lake

import (
	"testing"
	"time"

	"github.com/sluicehq/sluice/objstore"
)

func TestClassify(t *testing.T) {
	cutoff := time.Date(2026, 11, 30, 5, 0, 0, 0, time.UTC)
	old, young := cutoff.Add(-time.Minute), cutoff.Add(time.Minute)
	const (
		h13 = "t/dt=2024-05-01/hour=13/"
		h14 = "t/dt=2024-05-01/hour=14/"
	)
	refs := sweepRefs{
		named:         map[string]bool{h13 + "live": true, h13 + "replaced": true, h13 + "offchain": true, h14 + "live": true, h13 + "compacted": true},
		live:          map[string]bool{h13 + "live": true, h14 + "live": true, h13 + "compacted": true},
		replaced:      map[string]bool{h13 + "replaced": true},
		retiredBefore: time.Date(2024, 5, 1, 14, 0, 0, 0, time.UTC),
	}
	noRetention := refs
	noRetention.retiredBefore = time.Time{}
	cases := []struct {
		name string
		key  string
		mod  time.Time
		refs sweepRefs
		want string
	}{
		{"uncommitted, old", h14 + "orphan", old, refs, SweepUncommitted},
		{"uncommitted, young: a flush in progress", h14 + "orphan", young, refs, ""},
		{"uncommitted dead letter", "_deadletter/" + h14 + "orphan", old, refs, SweepUncommitted},
		{"live", h14 + "live", old, refs, ""},
		{"live, compacted", h13 + "compacted", old, noRetention, ""},
		{"replaced, record past the grace", h13 + "replaced", old, noRetention, SweepReplaced},
		{"named off the chains: kept for repair", h13 + "offchain", old, noRetention, ""},
		{"live in a retired hour", h13 + "live", old, refs, SweepRetired},
		{"young in a retired hour", h13 + "orphan", young, refs, ""},
		{"in the hour the horizon starts", h14 + "live", old, refs, ""},
		{"no hour in the key, uncommitted", "t/odd.parquet", old, refs, SweepUncommitted},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := classify(objstore.ObjectAttrs{Key: tc.key, LastModified: tc.mod}, tc.refs, cutoff); got != tc.want {
				t.Errorf("classify(%s) = %q, want %q", tc.key, got, tc.want)
			}
		})
	}
}

func TestRetentionWant(t *testing.T) {
	now := time.Date(2026, 11, 30, 5, 42, 0, 0, time.UTC)
	day := 24 * time.Hour
	cases := []struct {
		name string
		ret  TableRetention
		want Horizon
	}{
		{"none", TableRetention{}, Horizon{}},
		{"raw 90d in days", TableRetention{Raw: 90 * day, Unit: day}, Horizon{RawBefore: time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)}},
		{"36h in days", TableRetention{Raw: 36 * time.Hour, Unit: day}, Horizon{RawBefore: time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)}},
		{"unit below an hour is an hour", TableRetention{Raw: 36 * time.Hour}, Horizon{RawBefore: time.Date(2026, 11, 28, 17, 0, 0, 0, time.UTC)}},
		// Weeks since the epoch start on Thursdays.
		{"summaries in weeks", TableRetention{Summaries: 30 * day, Unit: 7 * day}, Horizon{SummariesBefore: time.Date(2026, 10, 29, 0, 0, 0, 0, time.UTC)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.ret.Want(now); got != tc.want {
				t.Errorf("Want = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestKeyTimes(t *testing.T) {
	for key, want := range map[string]string{
		"t/dt=2024-05-01/hour=13/x.parquet":           "2024-05-01T13:00:00Z",
		"_deadletter/t/dt=2024-05-01/hour=00/x.jsonl": "2024-05-01T00:00:00Z",
		"t/dt=2024-05-01/hour=24/x.parquet":           "",
		"t/dt=2024-05-01/x.parquet":                   "",
		"t/dt=2024-13-01/hour=01/x.parquet":           "",
		"t/compacted/dt=2024-05-01/hour=1/x.parquet":  "",
	} {
		got, ok := ObjectHour(key)
		if s := got.Format(time.RFC3339); (ok && s != want) || (!ok && want != "") {
			t.Errorf("ObjectHour(%s) = %s, %v; want %q", key, s, ok, want)
		}
	}
	for key, want := range map[string]string{
		"t/1m/dt=2024-05-01/hour=13.parquet": "2024-05-01T13:00:00Z",
		"t/1d/dt=2024-05-01/day.parquet":     "2024-05-01T00:00:00Z",
		"t/1d/dt=2024-05-01/week.parquet":    "",
		"u/1d/dt=2024-05-01/day.parquet":     "",
		"t/dt=2024-05-01/hour=13/x.parquet":  "",
	} {
		got, ok := SummaryUnitStart("t", key)
		if s := got.Format(time.RFC3339); (ok && s != want) || (!ok && want != "") {
			t.Errorf("SummaryUnitStart(%s) = %s, %v; want %q", key, s, ok, want)
		}
	}
}
