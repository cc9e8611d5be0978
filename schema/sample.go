package schema

import (
	_ "embed"
	"fmt"
)

// SampleYAML is the definition of the sample table "events" (tables/events.yaml).
//
//go:embed tables/events.yaml
var SampleYAML []byte

// SampleTables parses SampleYAML. Each call returns fresh tables, so callers
// may not affect each other.
func SampleTables() []*Table {
	tables, err := Parse(SampleYAML, "tables/events.yaml")
	if err != nil {
		// The file is embedded and covered by tests; failing here means the
		// binary itself is broken.
		panic(fmt.Sprintf("embedded sample table is invalid: %v", err))
	}
	return tables
}
