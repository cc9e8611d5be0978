// Package layout holds a test of the package graph: the import rules of
// DESIGN.md, checked with `go list -deps` so that a new import that breaks
// them fails the build's tests, not a review.
package layout

import (
	"os/exec"
	"strings"
	"testing"
)

const mod = "github.com/sluicehq/sluice/"

// deps lists the module's packages that pkg imports, directly or not.
func deps(t *testing.T, pkg string) map[string]bool {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", mod+pkg).Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	set := map[string]bool{}
	for _, line := range strings.Fields(string(out)) {
		if p, ok := strings.CutPrefix(line, mod); ok && p != pkg {
			set[p] = true
		}
	}
	return set
}

// sources are the packages of the source seam's sources.
var sources = []string{"ingest/kafka", "ingest/kinesis", "ingest/inbox", "ingest/httpin"}

func TestImportsPointOneWay(t *testing.T) {
	for _, tc := range []struct {
		pkg       string
		forbidden []string
	}{
		{"objstore", []string{"lake", "schema", "ingest", "aggregate", "ingest/kafka"}},
		{"objstore/client", []string{"lake", "schema", "ingest", "aggregate"}},
		{"lake", append([]string{"schema", "ingest", "aggregate"}, sources...)},
		{"schema", []string{"objstore", "lake", "ingest", "aggregate"}},
		{"ingest", append([]string{"aggregate"}, sources...)},
		{"aggregate", append([]string{"ingest"}, sources...)},
		{"ingest/kafka", []string{"aggregate"}},
		{"ingest/httpin", []string{"aggregate", "web"}},
		{"web/auth", []string{"ingest", "aggregate", "web"}},
	} {
		d := deps(t, tc.pkg)
		for _, f := range tc.forbidden {
			if d[f] {
				t.Errorf("%s imports %s", tc.pkg, f)
			}
		}
	}
	// A source plugs into the seam and imports no other source.
	for _, s := range sources {
		d := deps(t, s)
		if !d["ingest"] {
			t.Errorf("%s does not import the ingest seam", s)
		}
		for _, other := range sources {
			if other != s && d[other] {
				t.Errorf("source %s imports source %s", s, other)
			}
		}
	}
}

// The wiring is the binary's: no component imports the app package or the
// file config it reads.
func TestWiringStaysInTheBinary(t *testing.T) {
	for _, pkg := range []string{"ingest", "ingest/kafka", "ingest/kinesis", "ingest/inbox", "ingest/httpin", "aggregate", "ops", "web", "lake", "objstore/client", "loadtest/harness"} {
		d := deps(t, pkg)
		for _, w := range []string{"internal/app", "internal/config"} {
			if d[w] {
				t.Errorf("%s imports %s", pkg, w)
			}
		}
	}
}

// Test kits are for tests: no production package imports one, except that
// the benchmark harness drives the aggregator's fold through aggtest (as
// `sluice bench aggregate --fold-only`). Test files' imports are not
// counted: `go list` reports them apart.
func TestTestKitsStayOutOfProduction(t *testing.T) {
	kits := []string{"internal/testkit", "internal/testkit/ingesttest", "internal/testkit/kafkatest", "aggregate/aggtest",
		"objstore/objstoretest", "lake/laketest", "ingest/kinesis/kinesistest", "internal/browsertest"}
	allowed := map[string]map[string]bool{"loadtest/bench": {"aggregate/aggtest": true}}
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", mod+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	isKit := map[string]bool{}
	for _, k := range kits {
		isKit[k] = true
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg, ok := strings.CutPrefix(fields[0], mod)
		if !ok || isKit[pkg] {
			continue
		}
		for _, imp := range fields[1:] {
			if p, ok := strings.CutPrefix(imp, mod); ok && isKit[p] && !allowed[pkg][p] {
				t.Errorf("%s imports the test kit %s", pkg, p)
			}
		}
	}
}
