package main

import (
	"bytes"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/testkit"
)

// faultAggregator: `sluice aggregate` is killed with SIGKILL mid-pass
// several times, restarted each time, and then two aggregators race on the
// same stores. Their summaries must be byte-identical to one `aggregate
// --once` pass over the same raw data, and equal to the generators' truth.
func faultAggregator(t *testing.T, bin string, table *faultTable) {
	const events, kills = 150_000, 3
	dir := t.TempDir()
	seed := crashSeed(t)
	rng := rand.New(rand.NewPCG(uint64(seed), uint64(seed)>>1|1))
	fx := newAggregateFixture(t, dir, events, seed)
	faultyDir, refDir := filepath.Join(dir, "faulty"), filepath.Join(dir, "reference")
	faultyCfg, refCfg := fx.config(t, "faulty", faultyDir), fx.config(t, "reference", refDir)
	cs := testkit.NewProcs(t, dir)

	ref, _, err := cs.Start("reference", bin, false, "aggregate", "--config", refCfg, "--once")
	if err != nil {
		t.Fatal(err)
	}
	<-ref.Exited()
	if !ref.State().Success() {
		t.Fatalf("reference aggregator: %v", ref.State())
	}
	want := summaryFiles(t, refDir)
	if len(want) == 0 {
		t.Fatal("the reference pass wrote no summaries")
	}

	// Each instance is killed a random moment after its first new summary
	// object appears, while it has not written all of them yet.
	midPass := 0
	for i := range kills {
		before := countSummaryObjects(faultyDir)
		c, _, err := cs.Start(fmt.Sprintf("aggregate-%02d", i+1), bin, false, "aggregate", "--config", faultyCfg)
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(60 * time.Second)
		for countSummaryObjects(faultyDir) <= before && time.Now().Before(deadline) && c.Alive() {
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(time.Duration(rng.Int64N(int64(300 * time.Millisecond))))
		if countSummaryObjects(faultyDir) < len(want) {
			midPass++
		}
		killChild(t, c)
	}

	var pair []*testkit.Proc
	for _, name := range []string{"aggregate-race-a", "aggregate-race-b"} {
		c, _, err := cs.Start(name, bin, false, "aggregate", "--config", faultyCfg)
		if err != nil {
			t.Fatal(err)
		}
		pair = append(pair, c)
	}
	// Both must be up before anything is judged: when the killed instances
	// already wrote every summary, the loop below ends at once, and a
	// SIGTERM before a child's signal handler is installed kills it (exit
	// -1) instead of asking it to stop.
	deadline := time.Now().Add(2 * time.Minute)
	for _, c := range pair {
		for len(c.LogLines(t, "aggregator starting")) == 0 && c.Alive() && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
	}
	for time.Now().Before(deadline) && !sameFiles(summaryFiles(t, faultyDir), want) {
		time.Sleep(time.Second)
	}
	for _, c := range pair {
		if code, err := c.Stop(syscall.SIGTERM, 30*time.Second); err != nil || code != 0 {
			t.Fatalf("%s: exit %d, %v", c.Name, code, err)
		}
	}

	got := summaryFiles(t, faultyDir)
	wrong := 0
	var problems []string
	for key, data := range want {
		if !bytes.Equal(got[key], data) {
			wrong++
			problems = append(problems, key+": differs from the reference")
		}
	}
	// The reference itself is checked against the generators' truth, so a
	// faulty pair cannot agree with a wrong reference.
	_, truthProblems := fx.checkTruth(t, want)
	problems = append(problems, truthProblems...)
	for key := range got {
		if _, ok := want[key]; !ok {
			wrong++
			problems = append(problems, key+": not in the reference")
		}
	}
	row := faultRow{scenario: "aggregator kill + race", events: events,
		faults: fmt.Sprintf("%d SIGKILLs (%d mid-pass), then 2 aggregators racing", kills, midPass),
		wrong:  fmt.Sprintf("%d of %d", wrong, len(want)), peakRSS: peakRSS(cs, "aggregate-"), verdict: "ok"}
	if len(truthProblems) > 0 {
		row.wrong += fmt.Sprintf(", %d windows differ from the truth", len(truthProblems))
	}
	if wrong > 0 || len(truthProblems) > 0 {
		row.verdict = "FAILED"
	}
	table.add(row)
	if len(problems) > 0 {
		t.Fatalf("%d summary objects wrong after the kills and the race:\n%s", wrong, strings.Join(problems, "\n"))
	}
	if midPass == 0 {
		t.Errorf("no kill landed mid-pass: the scenario proved nothing")
	}
	t.Logf("%d summary objects identical to the reference and exact after %d kills (%d mid-pass) and a race", len(want), kills, midPass)
}

// countSummaryObjects counts the summary objects under dir (leases aside).
func countSummaryObjects(dir string) int {
	n := 0
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() && d.Name() == "_sluice" {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(d.Name(), ".parquet") {
			n++
		}
		return nil
	})
	return n
}
