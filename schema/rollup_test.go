package schema

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestRollupBad(t *testing.T) {
	cases := []struct {
		file string
		err  string
	}{
		{"rollups_plural", `line 11: unknown key "rollups": use rollup: (singular)`},
		{"no_windows", `table "events": rollup: windows: none defined`},
		{"windows_not_ascending", `table "events": rollup: windows: 1m0s after 5m0s: windows must be strictly ascending`},
		{"window_not_multiple", `table "events": rollup: windows: 5m0s is not a multiple of the finest window 2m0s`},
		{"finest_not_dividing_hour", `table "events": rollup: windows: finest window 7m0s must divide 1h`},
		{"finest_hours_not_dividing_day", `table "events": rollup: windows: finest window 5h0m0s must divide 1h, or be a multiple of 1h that divides 24h`},
		{"bad_window_duration", `line 12: rollup: windows: bad duration "1min"`},
		{"unknown_rollup_key", `line 13: unknown key "group_by" in rollup`},
		{"unknown_measure_key", `line 14: unknown key "feild" in measure`},
		{"dimension_unknown", `table "events": rollup: dimension "city" is not a field of the table`},
		{"dimension_float", `table "events": rollup: dimension "amount" has type float64, want string, int64 or bool`},
		{"measure_kind_unknown", `table "events": rollup: measure "p": unknown kind "median"`},
		{"measure_field_missing", `table "events": rollup: measure "total": kind sum needs a field`},
		{"measure_field_unknown", `table "events": rollup: measure "total": field "amount_usd" is not a field of the table`},
		{"sum_of_string", `table "events": rollup: measure "total": field "country" has type string, kind sum needs int64 or float64`},
		{"count_with_field", `table "events": rollup: measure "n": kind count takes no field`},
		{"quantile_out_of_range", `table "events": rollup: measure "lat": quantile 1.5 is outside [0, 1]`},
		{"quantiles_missing", `table "events": rollup: measure "lat": quantiles: none listed`},
		{"relative_accuracy_bad", `table "events": rollup: measure "lat": relative_accuracy must be in (0, 1), got 2`},
		{"precision_bad", `table "events": rollup: measure "users": precision must be in [4, 18], got 30`},
		{"precision_on_sum", `table "events": rollup: measure "total": precision applies to kind distinct only, not sum`},
		{"column_clash", `table "events": rollup: measure "lat_p50": summary column "lat_p50" is already used by measure "lat"`},
		{"measure_dimension_clash", `table "events": rollup: measure "country": summary column "country" is already used by dimension "country"`},
		{"measure_name_bad", `table "events": rollup: measure "Total-Sum": measure name "Total-Sum" is invalid`},
		{"negative_lateness", `line 12: rollup: allowed_lateness must not be negative, got -5s`},
	}
	seen := map[string]bool{}
	for _, tc := range cases {
		file := tc.file + ".bad.yaml"
		seen[file] = true
		t.Run(tc.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", "rollup", file))
			if err != nil {
				t.Fatal(err)
			}
			_, err = Parse(data, file)
			if err == nil {
				t.Fatalf("no error, want %q", tc.err)
			}
			if want := file + ": " + tc.err; !strings.HasPrefix(err.Error(), want) {
				t.Fatalf("error\n  %q\nwant prefix\n  %q", err, want)
			}
		})
	}
	files, _ := filepath.Glob("testdata/rollup/*.bad.yaml")
	for _, f := range files {
		if !seen[filepath.Base(f)] {
			t.Errorf("%s has no expected error in TestRollupBad", f)
		}
	}
}

func TestRollupSample(t *testing.T) {
	e := SampleTables()[0]
	r := e.Rollup
	if r == nil {
		t.Fatal("sample table has no rollup")
	}
	if want := []time.Duration{time.Minute, 5 * time.Minute, time.Hour, 24 * time.Hour}; !reflect.DeepEqual(r.Windows, want) {
		t.Errorf("windows %v, want %v", r.Windows, want)
	}
	if r.Finest() != time.Minute || r.AllowedLateness != 30*time.Second || r.LateHorizon != 2*time.Hour {
		t.Errorf("rollup %+v", r)
	}
	if !reflect.DeepEqual(r.DimensionIndexes(), []int{e.FieldIndex("event_type"), e.FieldIndex("country")}) {
		t.Errorf("dimension indexes %v", r.DimensionIndexes())
	}
	var cols []string
	for i := range r.Measures {
		cols = append(cols, r.Measures[i].Columns()...)
	}
	want := []string{"events", "amount_sum", "amount_sum__xsum", "amount_min", "amount_max",
		"amount_avg", "amount_avg__sum", "amount_avg__count", "amount_avg__xsum",
		"latency_p50", "latency_p90", "latency_p99", "latency__sketch", "users", "users__hll"}
	if !reflect.DeepEqual(cols, want) {
		t.Errorf("columns\n %v\nwant\n %v", cols, want)
	}
	lat := r.Measures[5]
	if lat.RelativeAccuracy != 0.01 || lat.FieldIndex() != e.FieldIndex("latency_ms") || lat.FieldType() != TypeInt64 {
		t.Errorf("latency measure %+v", lat)
	}
	if u := r.Measures[6]; u.Precision != 14 || u.FieldIndex() != e.FieldIndex("user_id") {
		t.Errorf("users measure %+v", u)
	}
	if c := r.Measures[0]; c.FieldIndex() != -1 {
		t.Errorf("count field index %d", c.FieldIndex())
	}
}

func TestRollupDefaults(t *testing.T) {
	tables, err := Load(filepath.Join("testdata", "good_full.good.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	c, h := tables[0].Rollup, tables[2].Rollup
	if c.AllowedLateness != 0 || c.LateHorizon != DefaultLateHorizon {
		t.Errorf("explicit 0s lateness / default horizon: %v %v", c.AllowedLateness, c.LateHorizon)
	}
	if h.AllowedLateness != DefaultAllowedLateness || len(h.Measures) != 0 || len(h.Dimensions) != 0 {
		t.Errorf("hourly defaults: %+v", h)
	}
	if want := []time.Duration{2 * time.Hour, 24 * time.Hour, 7 * 24 * time.Hour}; !reflect.DeepEqual(h.Windows, want) {
		t.Errorf("hourly windows %v", h.Windows)
	}
	q := c.Measures[7]
	if q.RelativeAccuracy != DefaultRelativeAccuracy {
		t.Errorf("default relative accuracy %v", q.RelativeAccuracy)
	}
	if want := []string{"score_q_p0", "score_q_p25", "score_q_p99_9", "score_q_p100", "score_q__sketch"}; !reflect.DeepEqual(q.Columns(), want) {
		t.Errorf("quantile columns %v", q.Columns())
	}
	if u := c.Measures[6]; u.Precision != DefaultDistinctPrecision {
		t.Errorf("default precision %d", u.Precision)
	}
	// Validate is idempotent, also for rollups.
	before := *c
	if err := tables[0].Validate(); err != nil || !reflect.DeepEqual(before, *c) {
		t.Errorf("second Validate changed the rollup or failed: %v", err)
	}
}

func TestQuantileColumn(t *testing.T) {
	cases := []struct {
		name string
		q    float64
		want string
	}{
		{"median", 0.5, "m_p50"}, {"p99", 0.99, "m_p99"}, {"p99.9", 0.999, "m_p99_9"},
		{"p99.99", 0.9999, "m_p99_99"}, {"zero", 0, "m_p0"}, {"one", 1, "m_p100"},
		{"small", 0.001, "m_p0_1"}, {"p5", 0.05, "m_p5"}, {"p12.5", 0.125, "m_p12_5"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := Measure{Name: "m"}
			if got := m.QuantileColumn(tc.q); got != tc.want {
				t.Errorf("QuantileColumn(%v) = %q, want %q", tc.q, got, tc.want)
			}
		})
	}
}

func TestParseDuration(t *testing.T) {
	cases := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"1m", time.Minute, true}, {"1d", 24 * time.Hour, true}, {"7d", 7 * 24 * time.Hour, true},
		{"90s", 90 * time.Second, true}, {"1.5d", 0, false}, {"d", 0, false}, {"1w", 0, false}, {"-1d", 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseDuration(tc.in)
			if (err == nil) != tc.ok || got != tc.want {
				t.Errorf("parseDuration(%q) = %v, %v", tc.in, got, err)
			}
		})
	}
}
