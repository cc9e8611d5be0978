package testkit

import (
	"testing"

	"github.com/sluicehq/sluice/schema"
)

// SampleTable returns a fresh copy of the sample table "events"
// (schema.SampleYAML), so a test may change it without affecting others.
func SampleTable(tb testing.TB) *schema.Table {
	tb.Helper()
	for _, t := range schema.SampleTables() {
		if t.Name == "events" {
			return t
		}
	}
	tb.Fatal("sample table events missing")
	return nil
}
