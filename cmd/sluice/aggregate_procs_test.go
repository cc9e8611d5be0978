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
	"github.com/sluicehq/sluice/loadtest/bench"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/schema"
)

// Two `sluice aggregate` processes on the same stores at once produce the
// same, correct summaries as one process alone.
func TestTwoAggregatorProcesses(t *testing.T) {
	bin := crashBinary(t)
	dir := t.TempDir()
	fx := newAggregateFixture(t, dir, 150_000, 3)
	tbl, objects := fx.table, fx.objects
	pairDir, soloDir := filepath.Join(dir, "pair"), filepath.Join(dir, "solo")
	pairCfg, soloCfg := fx.config(t, "pair", pairDir), fx.config(t, "solo", soloDir)

	cs := newChildren(t, dir)
	// The reference first: one aggregator, one pass.
	solo, _, err := cs.start("aggregator-solo", bin, false, "aggregate", "--config", soloCfg, "--once")
	if err != nil {
		t.Fatal(err)
	}
	<-solo.exited
	if !solo.state.Success() {
		cs.printTails(30)
		t.Fatalf("solo aggregator: %v", solo.state)
	}
	want := summaryFiles(t, soloDir)

	// Then the pair, scheduled, until their output matches (bounded). Their
	// leases are shorter than a whole pass, so they take turns mid-way.
	var pair []*child
	for _, name := range []string{"aggregator-a", "aggregator-z"} {
		c, _, err := cs.start(name, bin, false, "aggregate", "--config", pairCfg)
		if err != nil {
			t.Fatal(err)
		}
		pair = append(pair, c)
	}
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) && !sameFiles(summaryFiles(t, pairDir), want) {
		time.Sleep(time.Second)
	}
	for _, c := range pair {
		if code, err := c.stop(syscall.SIGTERM, 30*time.Second); err != nil || code != 0 {
			cs.printTails(30)
			t.Fatalf("%s: exit %d, %v", c.name, code, err)
		}
	}

	got := summaryFiles(t, pairDir)
	if len(want) == 0 || len(got) != len(want) {
		t.Fatalf("the pair wrote %d summary objects, one aggregator %d", len(got), len(want))
	}
	windows := 0
	for key, data := range want {
		if !bytes.Equal(got[key], data) {
			t.Errorf("%s differs between the pair and the single aggregator", key)
		}
		sum, err := aggregate.ReadSummary(bytes.NewReader(data), int64(len(data)), tbl)
		if err != nil {
			t.Fatal(err)
		}
		// One exact recomputation per summary object, over all its windows.
		starts := sum.Windows()
		from, to := time.UnixMicro(starts[0]), time.UnixMicro(starts[len(starts)-1]).Add(sum.Window)
		ex, err := aggregate.ExactRecompute(tbl, sum.Window, from, to, objects...)
		if err != nil {
			t.Fatal(err)
		}
		if err := ex.Check(tbl, sum); err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		windows += len(starts)
	}
	t.Logf("%d summary objects, %d windows identical and exact", len(want), windows)
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
// over about 28 hours of event time, so that every window size closes,
// committed through the real ingest writer into dir/lake.
type aggregateFixture struct {
	dir, lake string
	table     *schema.Table
	objects   [][]byte // the committed raw objects, for exact recomputation
}

func newAggregateFixture(t *testing.T, dir string, events, seed int64) aggregateFixture {
	t.Helper()
	f := aggregateFixture{dir: dir, lake: filepath.Join(dir, "lake"), table: schema.SampleTables()[0]}
	raw, err := objstore.NewLocal(f.lake)
	if err != nil {
		t.Fatal(err)
	}
	f.objects, err = bench.PrepareRaw(context.Background(), raw, bench.AggregateConfig{
		Table: f.table, Events: events, Partitions: 4, Seed: seed, FlushRecords: 5_000, EventsPerSecond: 1.5,
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
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
