package inbox_test

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/ingest"
	"github.com/sluicehq/sluice/ingest/inbox"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/objstore/objstoretest"
)

// mixedFiles is a small inbox of every kind: plain, gzip and zstd JSON
// lines, files larger than a split, CSV, Parquet of several row groups,
// bad lines, blank lines, an empty file and marker files.
func mixedFiles(t testing.TB, rng *rand.Rand) (files []genFile, ignored map[string][]byte) {
	n := 0
	next := func() int { n++; return n }
	for _, comp := range []string{"none", "gzip", "zstd"} {
		files = append(files, textFile(t, rng, "ev", next(), 40+rng.IntN(40), 0.05, comp))
	}
	files = append(files, textFile(t, rng, "ev", next(), 900, 0.02, "none")) // several splits
	files = append(files, textFile(t, rng, "ev", next(), 700, 0.02, "gzip")) // one split however large
	files = append(files, textFile(t, rng, "cv", next(), 60, 0.1, "none"))
	files = append(files, textFile(t, rng, "cv", next(), 800, 0.02, "none")) // several splits, header read apart
	files = append(files, textFile(t, rng, "cv", next(), 50, 0.05, "gzip"))
	files = append(files, parquetFile(t, rng, next(), 250, 100))
	ignored = map[string][]byte{
		"in/ev/2026/_SUCCESS":     []byte("done"),
		"in/ev/2026/.hidden.json": []byte(`{"ts":"2026-11-20T10:00:00Z","id":"x","user":"u","amount":1}`),
		"in/ev/2026/empty.jsonl":  nil,
		"in/cv/_committed_123":    []byte("x"),
	}
	return files, ignored
}

// requireBadLinesInSplits checks that the fixture keeps what the
// verifier's dead-letter placement check needs to mean something: bad
// lines in several splits of a multi-split file (positions restart there,
// file offsets and lines do not), in a compressed file (offsets count
// uncompressed bytes), and bad Parquet rows past the first row group.
func requireBadLinesInSplits(t *testing.T, files []genFile, splitBytes int64) {
	t.Helper()
	var multiSplit, compressed, parquetLater bool
	for _, f := range files {
		splits := map[int64]bool{}
		locs := f.locations(splitBytes)
		for i := range f.Bad {
			splits[locs[i][0]] = true
		}
		multiSplit = multiSplit || f.Format != "parquet" && len(splits) >= 3
		compressed = compressed || f.Comp != "none" && len(f.Bad) > 0
		parquetLater = parquetLater || f.Format == "parquet" && len(splits) >= 2
	}
	if !multiSplit || !compressed || !parquetLater {
		t.Fatalf("fixture: bad lines in 3+ splits of a file %v, in a compressed file %v, in 2+ Parquet row groups %v", multiSplit, compressed, parquetLater)
	}
}

func testBatch(t *testing.T, lakeB, inboxB objstore.Bucket) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	rng := rand.New(rand.NewPCG(1, 2))
	files, ignored := mixedFiles(t, rng)
	for _, f := range files {
		put(t, inboxB, f.Key, f.Data)
	}
	cfg := inbox.Config{SplitBytes: 16 << 10, Parallel: 4, Lease: 10 * time.Second}
	requireBadLinesInSplits(t, files, cfg.SplitBytes)
	for k, v := range ignored {
		put(t, inboxB, k, v)
	}
	tables := testTables(t)
	st := runPass(t, ctx, lakeB, inboxB, tableList(tables, "ev", "cv", "pq"), cfg)
	if st.Committed != len(files) || st.Failed+st.Quarantined+st.Refused != 0 {
		t.Fatalf("pass: %+v, want %d files committed", st, len(files))
	}
	if st.Splits <= len(files) {
		t.Errorf("pass mapped %d splits of %d files: the large files were not split", st.Splits, len(files))
	}
	versions := versionsOf(t, inboxB, files)
	for _, table := range []string{"ev", "cv", "pq"} {
		v := verify(t, lakeB, table, files, cfg.SplitBytes, versions)
		t.Logf("table %s: %s", table, v)
		if !v.ok() || v.Rows == 0 {
			t.Errorf("table %s: %s", table, v)
		}
	}
	// A second pass finds nothing new: every file is done exactly once.
	st = runPass(t, ctx, lakeB, inboxB, tableList(tables, "ev", "cv", "pq"), cfg)
	if st.Claimed != 0 {
		t.Errorf("second pass claimed %d files, want 0: %+v", st.Claimed, st)
	}
	// A new file after the first pass is found by incremental listing.
	late := textFile(t, rng, "ev", 99, 30, 0, "none")
	put(t, inboxB, late.Key, late.Data)
	files = append(files, late)
	st = runPass(t, ctx, lakeB, inboxB, tableList(tables, "ev"), cfg)
	if st.Committed != 1 {
		t.Errorf("pass after a new file: %+v, want 1 committed", st)
	}
	versions = versionsOf(t, inboxB, files)
	if v := verify(t, lakeB, "ev", files, cfg.SplitBytes, versions); !v.ok() {
		t.Errorf("table ev after the new file: %s", v)
	}
}

func TestBatchLocal(t *testing.T) {
	testBatch(t, objstoretest.NewLocal(t), objstoretest.NewLocal(t))
}

func TestBatchS3(t *testing.T) {
	b := objstoretest.NewS3(t, slog.New(slog.DiscardHandler))
	// One bucket holds the lake and the inbox, as with `store:` left empty.
	testBatch(t, b, b)
}

// A file replaced under the same key with new content: refused and
// reported by default (its old rows stay, the new content is not read),
// ingested as a new version on its own chains with replaced: version.
func TestReplacedFile(t *testing.T) {
	for _, policy := range []string{"refuse", "version"} {
		t.Run(policy, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			lakeB, inboxB := objstoretest.NewLocal(t), objstoretest.NewLocal(t)
			rng := rand.New(rand.NewPCG(5, 6))
			first := textFile(t, rng, "ev", 1, 50, 0.05, "none")
			put(t, inboxB, first.Key, first.Data)
			tables := tableList(testTables(t), "ev")
			cfg := inbox.Config{Replaced: policy, Lease: 10 * time.Second}
			if st := runPass(t, ctx, lakeB, inboxB, tables, cfg); st.Committed != 1 {
				t.Fatalf("first pass: %+v", st)
			}
			v1 := versionsOf(t, inboxB, []genFile{first})
			time.Sleep(10 * time.Millisecond) // a new modification time on the local store
			second := textFile(t, rng, "ev", 2, 70, 0.05, "none")
			second.Key = first.Key
			put(t, inboxB, second.Key, second.Data)
			v2 := versionsOf(t, inboxB, []genFile{second})
			if v1[first.Key] == v2[first.Key] {
				t.Fatal("the replaced file has the same version")
			}
			st := runPass(t, ctx, lakeB, inboxB, tables, cfg)
			l, _ := inbox.NewLedger(lakeB, "ev")
			e, _, found, err := l.Get(ctx, second.Key, v2[second.Key])
			if err != nil || !found {
				t.Fatalf("no ledger entry for the new version: %v", err)
			}
			old, _, _, _ := l.Get(ctx, first.Key, v1[first.Key])
			if old.State != inbox.StateCommitted {
				t.Errorf("the first version is %s, want committed", old.State)
			}
			switch policy {
			case "refuse":
				if st.Refused != 1 || st.Claimed != 0 || e.State != inbox.StateRefused || e.Replaces == "" {
					t.Errorf("refuse: pass %+v, entry %s replacing %q", st, e.State, e.Replaces)
				}
				if v := verify(t, lakeB, "ev", []genFile{first}, 1<<30, v1); !v.ok() {
					t.Errorf("refuse: the committed set is not the first version's: %s", v)
				}
			case "version":
				if st.Committed != 1 || e.State != inbox.StateCommitted || e.Replaces == "" {
					t.Errorf("version: pass %+v, entry %s replacing %q", st, e.State, e.Replaces)
				}
				both := map[string]string{first.Key: v1[first.Key]}
				if v := verify(t, lakeB, "ev", []genFile{first}, 1<<30, both); len(v.Missing)+len(v.Duplicates)+len(v.Wrong)+len(v.MissingDead) > 0 {
					t.Errorf("version: rows of the first version: %s", v)
				}
				second.Key = first.Key
				if v := verify(t, lakeB, "ev", []genFile{second}, 1<<30, v2); len(v.Missing)+len(v.Duplicates)+len(v.Wrong)+len(v.MissingDead) > 0 {
					t.Errorf("version: rows of the second version: %s", v)
				}
			}
			// Nothing more happens on later passes.
			if st := runPass(t, ctx, lakeB, inboxB, tables, cfg); st.Claimed+st.Refused != 0 {
				t.Errorf("a later pass did more: %+v", st)
			}
		})
	}
}

// Archive happens only once the file is committed, and a later pass does
// not ingest the archived copy or anything else again.
func TestArchiveAfterCommit(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	lakeB, inboxB := objstoretest.NewLocal(t), objstoretest.NewLocal(t)
	rng := rand.New(rand.NewPCG(8, 9))
	f := textFile(t, rng, "ev", 1, 40, 0, "gzip")
	put(t, inboxB, f.Key, f.Data)
	versions := versionsOf(t, inboxB, []genFile{f})
	cfg := inbox.Config{After: "archive", ArchivePrefix: "archive/", Lease: 10 * time.Second}
	tables := tableList(testTables(t), "ev")
	if st := runPass(t, ctx, lakeB, inboxB, tables, cfg); st.Committed != 1 {
		t.Fatalf("pass: %+v", st)
	}
	if _, err := inboxB.Attributes(ctx, f.Key); !objstore.IsNotExist(err) {
		t.Errorf("the committed file is still in the inbox: %v", err)
	}
	if a, err := inboxB.Attributes(ctx, "archive/"+f.Key); err != nil || a.Size != int64(len(f.Data)) {
		t.Errorf("archived copy: %+v, %v", a, err)
	}
	if v := verify(t, lakeB, "ev", []genFile{f}, 1<<30, versions); !v.ok() {
		t.Errorf("committed set: %s", v)
	}
	if st := runPass(t, ctx, lakeB, inboxB, tables, cfg); st.Claimed != 0 {
		t.Errorf("a later pass claimed %d files", st.Claimed)
	}
	// The file is gone from the inbox: once prune_after has passed, the
	// reconciliation forgets its entry; the entry of a file still there stays.
	kept := textFile(t, rng, "ev", 2, 10, 0, "none")
	put(t, inboxB, kept.Key, kept.Data)
	keep := inbox.Config{After: "keep", Lease: 10 * time.Second, PruneAfter: time.Nanosecond}
	if st := runPass(t, ctx, lakeB, inboxB, tables, keep); st.Committed != 1 {
		t.Fatalf("pass: %+v", st)
	}
	runPass(t, ctx, lakeB, inboxB, tables, keep) // a fresh process reconciles at its first pass
	l, _ := inbox.NewLedger(lakeB, "ev")
	var left []string
	if err := l.Each(ctx, func(key, _ string) error { left = append(left, key); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(left) != 1 || left[0] != kept.Key {
		t.Errorf("ledger entries after pruning: %v, want only %s", left, kept.Key)
	}
}

// The event endpoint wants its token and a notification naming an inbox
// file; then it asks for a pass.
func TestEventsHandler(t *testing.T) {
	lakeB := objstoretest.NewLocal(t)
	reg := prometheus.NewRegistry()
	w, err := ingest.NewWriter(ingest.WriterConfig{}, lakeB, slog.New(slog.DiscardHandler), ingest.NewMetrics(reg))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	src, err := inbox.NewSource(inbox.Config{}, tableList(testTables(t), "ev"), lakeB, func(string) (objstore.Bucket, error) { return lakeB, nil }, w, slog.New(slog.DiscardHandler), inbox.NewMetrics(reg))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	h := src.EventsHandler("s3cret", slog.New(slog.DiscardHandler))
	event := `{"Records":[{"eventName":"s3:ObjectCreated:Put","s3":{"object":{"key":"in%2Fev%2F2026%2Fa.jsonl"}}},
		{"eventName":"s3:ObjectCreated:Put","s3":{"object":{"key":"elsewhere/b.jsonl"}}}]}`
	for _, tc := range []struct {
		name, auth, body string
		want             int
		files            string
	}{
		{"no token", "", event, http.StatusUnauthorized, ""},
		{"wrong token", "Bearer nope", event, http.StatusUnauthorized, ""},
		{"not JSON", "Bearer s3cret", "{", http.StatusBadRequest, ""},
		{"one inbox file", "Bearer s3cret", event, http.StatusOK, `"inbox_files":1`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/events", strings.NewReader(tc.body))
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.want || !strings.Contains(rec.Body.String(), tc.files) {
				t.Errorf("got %d %q, want %d with %q", rec.Code, rec.Body.String(), tc.want, tc.files)
			}
		})
	}
}

// As a service, the source picks up files dropped while it runs, on its
// schedule and on Notify.
func TestServicePicksUpNewFiles(t *testing.T) {
	lakeB, inboxB := objstoretest.NewLocal(t), objstoretest.NewLocal(t)
	reg := prometheus.NewRegistry()
	logger := slog.New(slog.DiscardHandler)
	w, err := ingest.NewWriter(ingest.WriterConfig{}, lakeB, logger, ingest.NewMetrics(reg))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	src, err := inbox.NewSource(inbox.Config{Interval: time.Hour, Lease: 10 * time.Second}, tableList(testTables(t), "ev"), lakeB,
		func(string) (objstore.Bucket, error) { return inboxB, nil }, w, logger, inbox.NewMetrics(reg))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	rng := rand.New(rand.NewPCG(4, 4))
	var files []genFile
	for i := range 3 {
		f := textFile(t, rng, "ev", i, 30, 0.1, "none")
		put(t, inboxB, f.Key, f.Data)
		files = append(files, f)
		src.Notify() // the hourly schedule alone would not see it in time
		l, _ := inbox.NewLedger(lakeB, "ev")
		v := versionsOf(t, inboxB, []genFile{f})[f.Key]
		deadline := time.Now().Add(20 * time.Second)
		for {
			e, _, found, err := l.Get(ctx, f.Key, v)
			if err != nil {
				t.Fatal(err)
			}
			if found && e.State == inbox.StateCommitted {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("file %d not committed within 20s (found %v, state %s)", i, found, e.State)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	src.Close()
	if v := verify(t, lakeB, "ev", files, 1<<30, versionsOf(t, inboxB, files)); !v.ok() {
		t.Errorf("committed set: %s", v)
	}
}

// With batch.settle, a file that changed too recently waits, and the
// cursor does not move past it; once it has settled it is ingested.
func TestSettle(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	lakeB, inboxB := objstoretest.NewLocal(t), objstoretest.NewLocal(t)
	rng := rand.New(rand.NewPCG(10, 11))
	f := textFile(t, rng, "ev", 1, 20, 0, "none")
	put(t, inboxB, f.Key, f.Data)
	cfg := inbox.Config{Lease: 10 * time.Second, Settle: 700 * time.Millisecond, ReconcileEvery: -1}
	tables := tableList(testTables(t), "ev")
	if st := runPass(t, ctx, lakeB, inboxB, tables, cfg); st.Claimed != 0 {
		t.Fatalf("a fresh file was claimed: %+v", st)
	}
	time.Sleep(800 * time.Millisecond)
	if st := runPass(t, ctx, lakeB, inboxB, tables, cfg); st.Committed != 1 {
		t.Fatalf("the settled file: %+v, want it committed", st)
	}
	if v := verify(t, lakeB, "ev", []genFile{f}, 1<<30, versionsOf(t, inboxB, []genFile{f})); !v.ok() {
		t.Errorf("committed set: %s", v)
	}
}
