package ops

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/expr-lang/expr"

	"github.com/sluicehq/sluice/schema"
)

func sampleTables(t *testing.T) []*schema.Table {
	t.Helper()
	return schema.SampleTables()
}

func TestParseRulesGood(t *testing.T) {
	rs, err := LoadRules("testdata/good.yaml", sampleTables(t), []string{"127.0.0.1:9092"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs.Rules) != 3 || rs.Rules[0].Kind != KindEvent || rs.Rules[1].Kind != KindWindow || !rs.Rules[2].Absent {
		t.Fatalf("rules: %+v", rs.Rules)
	}
	if r := rs.Rules[1]; r.For != 3 || r.KeepFiringFor != 2 || !r.Resolve || r.NoData != NoDataOK || r.StalledAfter.String() != "5m0s" || len(r.dims) != 1 {
		t.Fatalf("window rule: %+v", r)
	}
	if rs.Topics[0].Brokers[0] != "127.0.0.1:9092" {
		t.Fatalf("default brokers not applied: %v", rs.Topics[0].Brokers)
	}
	if rs.Rules[0].Version == rs.Rules[1].Version || len(rs.Rules[0].Version) != 12 {
		t.Fatalf("versions: %q %q", rs.Rules[0].Version, rs.Rules[1].Version)
	}
}

// Bad rule files are refused with the file, the rule and the position of
// the mistake (line:column in the YAML file, inside the expression).
func TestParseRulesBad(t *testing.T) {
	want := map[string]string{
		"unknown_field.bad.yaml":         `testdata/unknown_field.bad.yaml:8:39: rule "typo": when: unknown name amout`,
		"type_mismatch.bad.yaml":         `testdata/type_mismatch.bad.yaml:8:19: rule "mismatch": when: invalid operation: > (mismatched types float64 and string)`,
		"block_scalar.bad.yaml":          `testdata/block_scalar.bad.yaml:11:17: rule "multi": when: unknown name nope`,
		"not_bool.bad.yaml":              `testdata/not_bool.bad.yaml:8:11: rule "notbool": when: expected bool`,
		"body_not_map.bad.yaml":          `rule "body": action.body: want a map`,
		"unknown_window.bad.yaml":        `rule "win": window "2m" is not one of the rollup's windows (1m, 5m, 1h, 1d)`,
		"measure_in_event_rule.bad.yaml": `testdata/measure_in_event_rule.bad.yaml:8:11: rule "wrongkind": when: unknown name latency_p99`,
		"bad_group_by.bad.yaml":          `rule "grp": group_by: "device" is not a dimension of the rollup (event_type, country)`,
		"bad_secret.bad.yaml":            `webhook "receiver": secret #1: not a whsec_ secret`,
		"unknown_webhook.bad.yaml":       `rule "r": action: no webhook named "recever"`,
		"for_on_event.bad.yaml":          `rule "r": absent, group_by, for, keep_firing_for, resolve and missing_data need window:`,
		"unknown_key.bad.yaml":           `field wen not found`,
		"unknown_table.bad.yaml":         `rule "r": unknown table "evnts"`,
	}
	files, _ := filepath.Glob("testdata/*.bad.yaml")
	if len(files) != len(want) {
		t.Fatalf("%d bad files, %d expectations", len(files), len(want))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			_, err := LoadRules(f, sampleTables(t), nil)
			if err == nil {
				t.Fatal("accepted")
			}
			w := want[filepath.Base(f)]
			if w == "" || !strings.Contains(err.Error(), w) {
				t.Fatalf("error %q\nwant it to contain %q", err, w)
			}
		})
	}
}

func TestSampleRulesCompile(t *testing.T) {
	data, err := os.ReadFile("rules/sample.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseRules(data, "sample.yaml", sampleTables(t), []string{"127.0.0.1:9092"}); err != nil {
		t.Fatal(err)
	}
}

// The README's rate-of-change condition: prev_<column> is nil for a group
// without a row in the previous window.
func TestWindowConditionRateOfChange(t *testing.T) {
	y := `
webhooks: [{name: h, url: "http://127.0.0.1:9/", secrets: ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]}]
rules:
  - {name: r, table: events, window: 1m, when: 'latency_p99 > 400 || events > 3 * (prev_events ?? 1e18)', action: {webhook: h}}
`
	rs, err := ParseRules([]byte(y), "r.yaml", sampleTables(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	r := rs.Rules[0]
	ten := 10.0
	for _, c := range []struct {
		events, p99 float64
		prev        *float64
		want        bool
	}{
		{events: 100, p99: 10, prev: nil, want: false},
		{events: 100, p99: 10, prev: &ten, want: true},
		{events: 20, p99: 10, prev: &ten, want: false},
		{events: 20, p99: 500, prev: nil, want: true},
	} {
		env := map[string]any{"null": nil}
		for k, v := range r.env {
			env[k] = v
		}
		env["events"], env["latency_p99"], env["prev_events"] = c.events, c.p99, c.prev
		out, err := expr.Run(r.cond, env)
		if err != nil || out != c.want {
			t.Fatalf("%+v: %v %v", c, out, err)
		}
	}
}
