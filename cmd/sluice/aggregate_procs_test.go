package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/aggregate"
	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/loadtest/bench"
	"github.com/sluicehq/sluice/loadtest/gen"
	"github.com/sluicehq/sluice/loadtest/oracle"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/schema"
)

// Two `sluice aggregate` processes on the same stores at once produce the
// same, correct summaries as one process alone.
func TestTwoAggregatorProcesses(t *testing.T) {
	bin := testkit.SluiceBinary(t)
	dir := t.TempDir()
	fx := newAggregateFixture(t, dir, 150_000, 3)
	pairDir, soloDir := filepath.Join(dir, "pair"), filepath.Join(dir, "solo")
	pairCfg, soloCfg := fx.config(t, "pair", pairDir), fx.config(t, "solo", soloDir)

	cs := testkit.NewProcs(t, dir)
	// The reference first: one aggregator, one pass.
	soloStart := time.Now()
	solo, _, err := cs.Start("aggregator-solo", bin, false, "aggregate", "--config", soloCfg, "--once")
	if err != nil {
		t.Fatal(err)
	}
	<-solo.Exited()
	if !solo.State().Success() {
		cs.PrintTails(30)
		t.Fatalf("solo aggregator: %v", solo.State())
	}
	want := summaryFiles(t, soloDir)
	soloPass := time.Since(soloStart)

	// Then the pair, scheduled, until their output matches (bounded). Their
	// leases are shorter than a whole pass, so they take turns mid-way.
	var pair []*testkit.Proc
	for _, name := range []string{"aggregator-a", "aggregator-z"} {
		c, _, err := cs.Start(name, bin, false, "aggregate", "--config", pairCfg)
		if err != nil {
			t.Fatal(err)
		}
		pair = append(pair, c)
	}
	// Bounded by the solo pass's time, not a fixed one: on a loaded machine
	// a pass takes longer, and the pair needs several leases for one.
	deadline := time.Now().Add(max(90*time.Second, 8*soloPass))
	for time.Now().Before(deadline) && !sameFiles(summaryFiles(t, pairDir), want) {
		time.Sleep(time.Second)
	}
	for _, c := range pair {
		if code, err := c.Stop(syscall.SIGTERM, 30*time.Second); err != nil || code != 0 {
			cs.PrintTails(30)
			t.Fatalf("%s: exit %d, %v", c.Name, code, err)
		}
	}

	got := summaryFiles(t, pairDir)
	if len(want) == 0 || len(got) != len(want) {
		t.Fatalf("the pair wrote %d summary objects, one aggregator %d", len(got), len(want))
	}
	for key, data := range want {
		if !bytes.Equal(got[key], data) {
			t.Errorf("%s differs between the pair and the single aggregator", key)
		}
	}
	windows, problems := fx.checkTruth(t, want)
	if len(problems) > 0 {
		t.Fatalf("summaries differ from what was generated:\n%s", strings.Join(problems, "\n"))
	}
	t.Logf("%d summary objects identical; %d windows equal to the generators' truth", len(want), windows)
}

func summaryFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	b, err := objstore.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	err = b.Iter(context.Background(), "", func(a objstore.ObjectAttrs) error {
		if strings.HasPrefix(a.Key, "_sluice/") {
			return nil // leases
		}
		rc, err := b.Get(context.Background(), a.Key)
		if err != nil {
			return err
		}
		defer rc.Close()
		data, err := io.ReadAll(rc)
		out[a.Key] = data
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameFiles(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !bytes.Equal(b[k], v) {
			return false
		}
	}
	return true
}

// aggregateFixture is raw data for aggregator process tests: events spread
// over about 28 hours of event time from a pinned midnight, so that every
// window size closes whatever the time of day, committed through the real
// ingest writer into dir/lake, and the generators' truth of them.
type aggregateFixture struct {
	dir, lake string
	table     *schema.Table
	truth     *gen.Truth
}

func newAggregateFixture(t *testing.T, dir string, events, seed int64) aggregateFixture {
	t.Helper()
	f := aggregateFixture{dir: dir, lake: filepath.Join(dir, "lake"), table: schema.SampleTables()[0]}
	raw, err := objstore.NewLocal(f.lake)
	if err != nil {
		t.Fatal(err)
	}
	if f.truth, err = gen.NewTruth(f.table.Rollup.Windows...); err != nil {
		t.Fatal(err)
	}
	_, err = bench.PrepareRaw(context.Background(), raw, bench.AggregateConfig{
		Table: f.table, Events: events, Partitions: 4, Seed: seed, FlushRecords: 5_000, EventsPerSecond: 1.5,
		Start: time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC), Truth: f.truth,
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// checkTruth reads summary files (by key) as a user would and compares
// every window of every size with the generators' truth. It checks the
// windows ending an hour (plus the allowed lateness) before the last
// event: at 1.5 events/s over 4 partitions every partition's last event is
// that recent, so those windows are closed. It returns the windows checked
// and one line per wrong window.
func (f aggregateFixture) checkTruth(t *testing.T, files map[string][]byte) (int, []string) {
	t.Helper()
	cols, err := oracle.ColumnsFor(f.table)
	if err != nil {
		t.Fatal(err)
	}
	last, ok := f.truth.MaxEventTime()
	if !ok {
		t.Fatal("no events generated")
	}
	until := last.Add(-time.Hour - f.table.Rollup.AllowedLateness).UnixMicro()
	checked := 0
	var problems []string
	for _, w := range f.table.Rollup.Windows {
		rows := oracle.Rows{}
		prefix := f.table.Name + "/" + aggregate.WindowName(w) + "/"
		for key, data := range files {
			if strings.HasPrefix(key, prefix) && strings.HasSuffix(key, ".parquet") {
				if err := cols.Read(rows, key, data); err != nil {
					t.Fatal(err)
				}
			}
		}
		res := cols.Check(f.truth, w, rows, until)
		if res.Checked == 0 {
			problems = append(problems, fmt.Sprintf("no closed %s window", aggregate.WindowName(w)))
		}
		checked += res.Checked
		problems = append(problems, res.Failures...)
	}
	return checked, problems
}

// config writes a sluice.yaml for an aggregator over the fixture's raw data
// that writes summaries to summaries, with leases shorter than a pass.
func (f aggregateFixture) config(t *testing.T, name, summaries string) string {
	t.Helper()
	path := filepath.Join(f.dir, name+".yaml")
	body := fmt.Sprintf(`kafka: {brokers: ["127.0.0.1:1"]}
store: {local_dir: %q}
summary_store: {local_dir: %q}
http: {addr: "127.0.0.1:0"}
aggregate: {interval: 500ms, lease: 4s, compact_every: -1s}
`, f.lake, summaries)
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
