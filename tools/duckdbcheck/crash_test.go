package duckdbcheck

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/lakefiles"
	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/loadtest/verify"
	"github.com/sluicehq/sluice/objstore"
)

// checkLake runs the README's query over the lake in lakeDir and compares
// it with the verifier's count of committed rows and with the rows the
// list's records promise; the glob over the table's prefix may only count
// more. It does not write to the lake.
func checkLake(t *testing.T, lakeDir string) (readme, glob int64) {
	t.Helper()
	ctx := context.Background()
	r := readmeQuery(t)
	b, err := objstore.NewLocal(lakeDir)
	if err != nil {
		t.Fatal(err)
	}
	locate, err := lakefiles.LocalLocator(lakeDir)
	if err != nil {
		t.Fatal(err)
	}
	files, err := lakefiles.List(ctx, lake.NewCommitLog(b), table, lake.KindRaw, locate)
	if err != nil {
		t.Fatal(err)
	}
	var listed int64
	for _, f := range files {
		listed += f.Rows
	}
	script := filepath.Join(t.TempDir(), r.script)
	writeScript(t, b, lakeDir, lake.KindRaw, script)
	readme, err = runREADME(t, script, r.query)
	if err != nil {
		t.Fatal(err)
	}
	vc, err := verify.ReadCommitted(ctx, b, table, verify.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(vc.Issues) > 0 {
		t.Errorf("the verifier finds issues: %v", vc.Issues)
	}
	if readme != vc.Rows || readme != listed || readme == 0 {
		t.Errorf("the README's query counts %d rows, the verifier %d, the list's records %d; want all equal and not 0", readme, vc.Rows, listed)
	}
	glob = count(t, fmt.Sprintf("SELECT count(*) FROM read_parquet('%s/%s/**/*.parquet')", lakeDir, table))
	if glob < readme {
		t.Errorf("the glob counts %d, fewer than the committed %d", glob, readme)
	}
	return readme, glob
}

// SLUICE_DUCKDB_LAKE=<dir> checks an existing local lake (dev's
// ./sluice-data/lake, a crash test's, a load test's --data-dir) the same
// way: the README's query equals the verifier's count.
func TestREADMEQueryOnLake(t *testing.T) {
	dir := os.Getenv("SLUICE_DUCKDB_LAKE")
	if dir == "" {
		t.Skip("SLUICE_DUCKDB_LAKE not set")
	}
	readme, glob := checkLake(t, dir)
	t.Logf("%s: the README's query counts %d rows; a glob over %s/ would count %d", dir, readme, table, glob)
}

// The README's query after SIGKILLs: `sluice dev` (broker, producer,
// ingester, aggregator in one process) is killed with SIGKILL while it
// ingests, restarted on the same data directory, and at last stopped with
// Ctrl-C, which commits everything the broker holds. Then the README's
// query equals the verifier's count; after a sweep the glob does too.
func TestREADMEQueryAfterSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("builds sluice and runs it for half a minute")
	}
	bin := testkit.SluiceBinary(t)
	dataDir := t.TempDir()
	lakeDir := filepath.Join(dataDir, "lake")
	kills := 3
	procs := testkit.NewProcs(t, dataDir)
	for i := range kills + 1 {
		p, _, err := procs.Start(fmt.Sprintf("dev-%d", i), bin, false, "dev", "--data-dir", dataDir, "--kafka-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
			"--rate", "2000", "--flush-interval", "200ms", "--log-level", "warn")
		if err != nil {
			t.Fatal(err)
		}
		before := dataLinks(t, lakeDir)
		deadline := time.Now().Add(60 * time.Second)
		for dataLinks(t, lakeDir) < before+4 {
			select {
			case <-p.Exited():
				t.Fatalf("run %d: dev exited early (%v):\n%s", i, p.WaitErr(), p.Tail(40))
			case <-time.After(100 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("run %d: dev committed nothing within a minute:\n%s", i, p.Tail(40))
			}
		}
		if i < kills {
			// Somewhere between flushes, or in the middle of one.
			time.Sleep(time.Duration(rand.IntN(400)) * time.Millisecond)
			if _, err := p.Stop(syscall.SIGKILL, time.Minute); err != nil {
				t.Fatal(err)
			}
			continue
		}
		code, err := p.Stop(syscall.SIGINT, 2*time.Minute)
		if err != nil {
			t.Fatalf("dev still running two minutes after Ctrl-C: %v\n%s", err, p.Tail(40))
		}
		if code != 0 {
			t.Fatalf("dev after Ctrl-C: exit %d\n%s", code, p.Tail(40))
		}
	}
	readme, glob := checkLake(t, lakeDir)
	t.Logf("after %d SIGKILLs: the README's query counts %d rows, the glob %d", kills, readme, glob)

	b, err := objstore.NewLocal(lakeDir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lake.NewCommitLog(b).DeleteOrphans(context.Background(), table, 0); err != nil {
		t.Fatal(err)
	}
	if readme2, glob2 := checkLake(t, lakeDir); readme2 != readme || glob2 != readme {
		t.Errorf("after the sweep: the README's query counts %d, the glob %d; want both %d", readme2, glob2, readme)
	}
}

// dataLinks counts the table's data links: flushes committed so far.
func dataLinks(t *testing.T, lakeDir string) int {
	t.Helper()
	if _, err := os.Stat(filepath.Join(lakeDir, filepath.FromSlash(lake.CommitsRoot))); err != nil {
		return 0
	}
	b, err := objstore.NewLocal(lakeDir)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := lake.NewCommitLog(b).Records(context.Background(), table)
	if err != nil {
		return 0 // a half-written lake of a killed process is read again later
	}
	n := 0
	for _, r := range recs {
		if r.Kind == lake.LinkData {
			n++
		}
	}
	return n
}
