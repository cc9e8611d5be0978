package duckdbcheck

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/duckdb/duckdb-go/v2" // the "duckdb" database/sql driver

	"github.com/sluicehq/sluice/aggregate"
	"github.com/sluicehq/sluice/ingest"
	"github.com/sluicehq/sluice/internal/lakefiles"
	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/internal/testkit/ingesttest"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/loadtest/gen"
	"github.com/sluicehq/sluice/loadtest/verify"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/objstore/objstoretest"
	"github.com/sluicehq/sluice/schema"
)

const (
	table  = "events"
	source = "kafka:events"
)

// start is the event time of the first record: the data crosses the hour
// at 10:00, and one record in 20 is up to two hours late.
var start = time.Date(2026, 3, 1, 9, 55, 0, 0, time.UTC)

// malformed are records the events table refuses (dead letters).
var malformed = [][]byte{
	[]byte(`{"ts":`),
	[]byte(`[1,2,3]`),
	[]byte(`{"event_id":"x","user_id":"u","event_type":"e","amount":1,"latency_ms":1,"ok":true}`),
}

// readme is the README's way of reading the lake with DuckDB: the `sluice
// files` command that writes the script, and the duckdb command that reads
// it and runs the query.
type readme struct {
	files  []string // sluice files TABLE ... --format duckdb --output SCRIPT
	script string   // SCRIPT
	query  string   // the duckdb -c after ".read SCRIPT"
}

// readmeQuery finds the README's DuckDB instructions, so this test runs
// what a reader runs (cmd/sluice's TestREADME checks that the sluice
// command line parses).
func readmeQuery(t *testing.T) readme {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var r readme
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		words := splitShell(t, sc.Text())
		switch {
		case len(words) > 4 && words[0] == "go" && words[3] == "files", len(words) > 2 && words[0] == "sluice" && words[1] == "files":
			r.files = words
			for i, w := range words {
				if (w == "--output" || w == "-o") && i+1 < len(words) {
					r.script = words[i+1]
				}
			}
		case len(words) > 0 && words[0] == "duckdb" && r.script != "":
			var cs []string
			for i, w := range words {
				if w == "-c" && i+1 < len(words) {
					cs = append(cs, words[i+1])
				}
			}
			if len(cs) != 2 || cs[0] != ".read "+r.script {
				t.Fatalf("README: %q: want duckdb -c \".read %s\" -c QUERY", sc.Text(), r.script)
			}
			r.query = cs[1]
			return r
		}
	}
	t.Fatalf("README: no `sluice files ... --format duckdb --output FILE` followed by `duckdb -c \".read FILE\" -c QUERY`")
	return r
}

// splitShell splits a command line at spaces outside double quotes.
func splitShell(t *testing.T, line string) []string {
	var words []string
	var w strings.Builder
	quoted, inWord := false, false
	for _, c := range line {
		switch {
		case c == '"':
			quoted, inWord = !quoted, true
		case (c == ' ' || c == '\t') && !quoted:
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		case c == '#' && !quoted && !inWord:
			return words
		default:
			w.WriteRune(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words
}

// duckDB opens an in-memory DuckDB on one connection, so that a view made
// by one statement is seen by the next.
func duckDB(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return db
}

// writeScript writes what `sluice files TABLE --format duckdb --output
// path` writes, through the same function.
func writeScript(t *testing.T, b objstore.Bucket, lakeDir, kind, path string) {
	t.Helper()
	locate, err := lakefiles.LocalLocator(lakeDir)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	err = lakefiles.Write(context.Background(), &buf, lake.NewCommitLog(b), table,
		lakefiles.Options{Format: lakefiles.FormatDuckDB, Kind: kind, Locate: locate})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// runREADME is `duckdb -c ".read script" -c query` for a query that
// returns one number, in a fresh database.
func runREADME(t *testing.T, script, query string) (int64, error) {
	t.Helper()
	db := duckDB(t)
	data, err := os.ReadFile(script)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(string(data)); err != nil {
		return 0, fmt.Errorf(".read %s: %w", script, err)
	}
	var n int64
	if err := db.QueryRow(query).Scan(&n); err != nil {
		return 0, fmt.Errorf("%s: %w", query, err)
	}
	return n, nil
}

// count runs one counting query.
func count(t *testing.T, query string) int64 {
	t.Helper()
	var n int64
	if err := duckDB(t).QueryRow(query).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// written is what a test lake holds.
type written struct {
	good, bad int64 // records committed to raw objects, to dead letters
	// orphanRows are the rows of raw objects written by a flush that
	// crashed before its commit record; its records were delivered again
	// and committed by the next owner, so they also count in good.
	orphanRows int64
}

// partitionData is the records of one partition in offset order; with
// refused, one in 25 is malformed.
func partitionData(t *testing.T, seed int64, n int, refused bool) (values [][]byte, times []time.Time, bad []bool) {
	t.Helper()
	g, err := gen.New(gen.Config{Seed: seed, Start: start, EventsPerSecond: 1, LateShare: 0.05, LateBy: 2 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		value, _, ev := g.Next(nil)
		isBad := refused && i%25 == 24
		if isBad {
			value = malformed[(i/25)%len(malformed)]
		}
		values, times, bad = append(values, bytes.Clone(value)), append(times, ev.TS), append(bad, isBad)
	}
	return values, times, bad
}

// flush appends values[from:to] at their offsets and flushes them.
func flush(t *testing.T, p *ingest.Partition, values [][]byte, times []time.Time, from, to int) error {
	t.Helper()
	for i := from; i < to; i++ {
		p.Append(values[i], lake.PositionOf(int64(i)), times[i])
	}
	r, _ := ingesttest.Flush(context.Background(), t, p)
	return r.Err
}

// crash is a writer that dies between uploading a flush's objects and
// writing its commit record: the objects stay behind as orphans.
func crash(t *testing.T, b objstore.Bucket, tb *schema.Table, partition string, values [][]byte, times []time.Time, n int) {
	t.Helper()
	ctx := context.Background()
	hook := objstoretest.NewHookBucket(b)
	w, err := ingest.NewWriter(ingest.WriterConfig{FlushRecords: 1 << 20, FlushInterval: time.Hour, Workers: 1},
		hook, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	p, _, err := w.OpenPartition(ctx, tb, source, partition, ingest.StartAt(lake.Position{}, "duckdb-check"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	errKilled := errors.New("killed before the commit record")
	hook.Before = func(op, key string) error {
		if op == "put_if_absent" && strings.HasPrefix(key, lake.CommitsRoot) {
			return errKilled
		}
		return nil
	}
	if err := flush(t, p, values, times, 0, n); !errors.Is(err, errKilled) {
		t.Fatalf("the crashed flush: %v, want it to fail at its commit record", err)
	}
}

// writeLake ingests 2 partitions x 3 flushes x 300 records through the real
// writer; partition 0's first flush is first attempted by a writer that
// crashes before its commit record, and then delivered again.
func writeLake(t *testing.T, b objstore.Bucket) written {
	t.Helper()
	ctx := context.Background()
	tb := testkit.SampleTable(t)
	const flushes, perFlush = 3, 300
	var out written
	w, err := ingest.NewWriter(ingest.WriterConfig{FlushRecords: 1 << 20, FlushInterval: time.Hour, Workers: 2},
		b, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for pi, part := range []string{"0", "1"} {
		values, times, bad := partitionData(t, int64(pi+1), flushes*perFlush, true)
		for _, isBad := range bad {
			if isBad {
				out.bad++
			} else {
				out.good++
			}
		}
		if part == "0" {
			crash(t, b, tb, part, values, times, perFlush)
			for _, isBad := range bad[:perFlush] {
				if !isBad {
					out.orphanRows++
				}
			}
		}
		p, _, err := w.OpenPartition(ctx, tb, source, part, ingest.StartAt(lake.Position{}, "duckdb-check"))
		if err != nil {
			t.Fatal(err)
		}
		for f := range flushes {
			if err := flush(t, p, values, times, f*perFlush, (f+1)*perFlush); err != nil {
				t.Fatalf("flush: %v", err)
			}
		}
		p.Close()
	}
	return out
}

// The README's DuckDB query counts every committed record once: after a
// crashed flush left orphans (whose records were delivered again), and
// when a compaction commits between listing and reading. The glob the
// README used to give over-counts both; the verifier agrees with DuckDB.
func TestREADMEQueryCountsCommittedRecordsOnce(t *testing.T) {
	ctx := context.Background()
	r := readmeQuery(t)
	if !strings.Contains(strings.Join(r.files, " "), "--format duckdb") {
		t.Fatalf("README: %q does not write a DuckDB script", strings.Join(r.files, " "))
	}
	dir := t.TempDir()
	lakeDir := filepath.Join(dir, "lake")
	b, err := objstore.NewLocal(lakeDir)
	if err != nil {
		t.Fatal(err)
	}
	w := writeLake(t, b)
	if w.orphanRows == 0 || w.bad == 0 {
		t.Fatalf("the lake has %d orphan rows and %d dead letters; want some of each", w.orphanRows, w.bad)
	}
	glob := fmt.Sprintf("SELECT count(*) FROM read_parquet('%s/%s/**/*.parquet')", lakeDir, table)
	deadGlob := fmt.Sprintf("SELECT count(*) FROM read_json('%s/%s%s/**/*.jsonl', format = 'newline_delimited')", lakeDir, lake.DeadLetterRoot, table)
	check := func(what, script string, want int64) {
		t.Helper()
		got, err := runREADME(t, script, r.query)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if got != want {
			t.Errorf("%s: the README's query counts %d, want %d", what, got, want)
		}
	}

	// After the crash: the orphans are under the prefix, not in the list.
	before := filepath.Join(dir, "before-compaction.sql")
	writeScript(t, b, lakeDir, lake.KindRaw, before)
	check("after a crashed flush", before, w.good)
	if g := count(t, glob); g != w.good+w.orphanRows {
		t.Errorf("the glob counts %d, want %d: the committed %d and the crashed flush's %d again", g, w.good+w.orphanRows, w.good, w.orphanRows)
	}
	deadScript := filepath.Join(dir, "deadletters.sql")
	writeScript(t, b, lakeDir, lake.KindDeadLetter, deadScript)
	if got, err := runREADME(t, deadScript, "SELECT count(*) FROM events_deadletter"); err != nil || got != w.bad {
		t.Errorf("dead letters: %d (%v), want %d", got, err, w.bad)
	}
	if g := count(t, deadGlob); g <= w.bad {
		t.Errorf("the dead-letter glob counts %d, want more than %d (the crashed flush's dead letters)", g, w.bad)
	}

	// Compactions commit after the list was taken: the list still reads the
	// replaced objects, which stay until the sweeper's grace ends. Lists
	// are also taken and read in the middle of each compaction: its new
	// objects are uploaded but not yet committed (the glob reads them), and
	// read again just after its record is written.
	log := lake.NewCommitLog(b)
	liveBefore, err := log.LiveObjects(ctx, table)
	if err != nil {
		t.Fatal(err)
	}
	hb := objstoretest.NewHookBucket(b)
	var mid []string
	midCheck := func(what, script string) {
		got, err := runREADME(t, script, r.query)
		if err != nil || got != w.good {
			t.Errorf("%s: the README's query counts %d (%v), want %d", what, got, err, w.good)
		}
	}
	hb.Before = func(op, key string) error {
		if op == "put_if_absent" && strings.HasPrefix(key, lake.CompactionsRoot) {
			script := filepath.Join(dir, fmt.Sprintf("mid-compaction-%d.sql", len(mid)))
			writeScript(t, b, lakeDir, lake.KindRaw, script)
			midCheck("listed while a compaction's objects are uploaded, before its record", script)
			if g := count(t, glob); g <= w.good+w.orphanRows {
				t.Errorf("the glob counts %d while a compaction's objects are uploaded, want more than %d", g, w.good+w.orphanRows)
			}
			mid = append(mid, script)
		}
		return nil
	}
	hb.After = func(op, key string) error {
		if op == "put_if_absent" && strings.HasPrefix(key, lake.CompactionsRoot) {
			midCheck("listed before a compaction record, read just after it", mid[len(mid)-1])
		}
		return nil
	}
	c, err := aggregate.NewCompactor(aggregate.CompactorConfig{CloseDelay: time.Minute, MaxGroupsPerRun: 1, TempDir: t.TempDir()},
		hb, lake.NewCommitLog(hb), slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	var res aggregate.CompactionResult
	for {
		r, err := c.CompactTable(ctx, testkit.SampleTable(t), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if r.Committed == 0 {
			break
		}
		res.Committed += r.Committed
		res.ObjectsIn += r.ObjectsIn
		res.ObjectsOut += r.ObjectsOut
		res.Rows += r.Rows
	}
	if res.Committed < 2 || len(mid) != res.Committed {
		t.Fatalf("%d compactions committed, %d lists taken during them; want at least 2, one each", res.Committed, len(mid))
	}
	t.Logf("%d compactions: %d of %d live objects (%d rows) replaced by %d", res.Committed, res.ObjectsIn, len(liveBefore), res.Rows, res.ObjectsOut)
	check("listed before a compaction, read after it", before, w.good)
	after := filepath.Join(dir, "after-compaction.sql")
	writeScript(t, b, lakeDir, lake.KindRaw, after)
	check("listed after a compaction", after, w.good)
	if g := count(t, glob); g != w.good+w.orphanRows+res.Rows {
		t.Errorf("the glob counts %d after the compaction, want %d: the committed %d, the crashed flush's %d and the %d compacted rows twice",
			g, w.good+w.orphanRows+res.Rows, w.good, w.orphanRows, res.Rows)
	}
	vc, err := verify.ReadCommitted(ctx, b, table, verify.Options{Source: source})
	if err != nil {
		t.Fatal(err)
	}
	if vc.Rows != w.good || vc.DeadLetters != w.bad || len(vc.Issues) > 0 {
		t.Errorf("the verifier reads %d rows and %d dead letters (issues %v), want %d and %d", vc.Rows, vc.DeadLetters, vc.Issues, w.good, w.bad)
	}

	// The sweeper, past its grace, removes orphans and replaced objects:
	// then the glob is right too, and a list older than the grace is not.
	n, err := log.DeleteOrphans(ctx, table, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("sweep: %d objects deleted", n)
	check("after the sweep", after, w.good)
	if g := count(t, glob); g != w.good {
		t.Errorf("after the sweep the glob counts %d, want %d", g, w.good)
	}
	if _, err := runREADME(t, before, r.query); err == nil {
		t.Errorf("a list taken before the compaction still reads after the replaced objects were swept")
	}
}

// union_by_name: objects written before a nullable column was added read
// it as NULL, in the same view as objects that have it.
func TestDuckDBViewReadsMixedSchemas(t *testing.T) {
	ctx := context.Background()
	v1 := testkit.SampleTable(t)
	yaml := bytes.Replace(schema.SampleYAML, []byte("- {name: ok, type: bool}"),
		[]byte("- {name: ok, type: bool}\n      - {name: region, type: string, nullable: true}"), 1)
	tables, err := schema.Parse(yaml, "events-v2.yaml")
	if err != nil {
		t.Fatal(err)
	}
	v2 := tables[0]
	if v2.FieldIndex("region") < 0 {
		t.Fatal("events v2 has no region field")
	}
	dir := t.TempDir()
	lakeDir := filepath.Join(dir, "lake")
	b, err := objstore.NewLocal(lakeDir)
	if err != nil {
		t.Fatal(err)
	}
	w, err := ingest.NewWriter(ingest.WriterConfig{FlushRecords: 1 << 20, FlushInterval: time.Hour, Workers: 1},
		b, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var rows, regions int64
	for pi, tb := range []*schema.Table{v1, v2} {
		values, times, _ := partitionData(t, int64(pi+10), 100, false)
		for i := range values {
			if tb == v2 && i%2 == 0 {
				values[i] = append(bytes.TrimSuffix(values[i], []byte("}")), []byte(`,"region":"eu"}`)...)
				regions++
			}
			rows++
		}
		p, _, err := w.OpenPartition(ctx, tb, source, fmt.Sprint(pi), ingest.StartAt(lake.Position{}, "duckdb-check"))
		if err != nil {
			t.Fatal(err)
		}
		if err := flush(t, p, values, times, 0, len(values)); err != nil {
			t.Fatal(err)
		}
		p.Close()
	}
	script := filepath.Join(dir, "events.sql")
	writeScript(t, b, lakeDir, lake.KindRaw, script)
	for query, want := range map[string]int64{
		"SELECT count(*) FROM events":                                                rows,
		"SELECT count(region) FROM events":                                           regions,
		"SELECT count(*) FROM events WHERE region IS NULL":                           rows - regions,
		"SELECT count(DISTINCT event_id) FROM events":                                rows,
		"SELECT count(*) FROM events WHERE ts IS NOT NULL":                           rows,
		"SELECT count(*) FROM events WHERE region = 'eu'":                            regions,
		"SELECT count(*) FROM (DESCRIBE events) WHERE column_name IN ('dt', 'hour')": 0,
	} {
		got, err := runREADME(t, script, query)
		if err != nil || got != want {
			t.Errorf("%s = %d (%v), want %d", query, got, err, want)
		}
	}
}
