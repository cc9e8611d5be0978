package verify_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/sluicehq/sluice/ingest"
	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/internal/testkit/ingesttest"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/loadtest/gen"
	"github.com/sluicehq/sluice/loadtest/verify"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/objstore/objstoretest"
)

const (
	table  = "events"
	source = "kafka:events"
)

var partitions = []string{"0", "1", "2"}

// malformed are records the events table rejects, each for another reason;
// the last is not UTF-8, so its dead letter carries value_b64.
var malformed = [][]byte{
	[]byte(`{"ts":`),
	[]byte(`[1,2,3]`),
	[]byte(`{"event_id":"x","user_id":"u","event_type":"e","amount":1,"latency_ms":1,"ok":true}`),
	[]byte("\xff\xfe not json"),
}

// committedLake is a table committed by the real ingest writer, and what was
// produced into it.
type committedLake struct {
	b    objstore.Bucket
	exp  *verify.Expected
	recs []lake.CommitRecord
}

// writeLake commits 3 partitions x 3 flushes x 400 records; one in 25 is
// malformed, one in 20 is late by up to two hours, and event time crosses
// an hour, so commit records name several raw objects and a dead-letter
// object each, and objects hold offsets out of order.
func writeLake(t *testing.T) *committedLake {
	t.Helper()
	ctx := context.Background()
	b := objstoretest.NewLocal(t)
	events := testkit.SampleTable(t)
	w, err := ingest.NewWriter(ingest.WriterConfig{FlushRecords: 1 << 20, FlushInterval: time.Hour, Workers: 2},
		b, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	exp := verify.NewExpected()
	for pi, part := range partitions {
		g, err := gen.New(gen.Config{Seed: int64(pi + 1), Start: time.Date(2026, 3, 1, 9, 59, 0, 0, time.UTC),
			EventsPerSecond: 10, LateShare: 0.05, LateBy: 2 * time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		p, _, err := w.OpenPartition(ctx, events, source, part, ingest.StartAt(lake.Position{}, "verify-test"))
		if err != nil {
			t.Fatal(err)
		}
		var off int64
		for range 3 {
			for range 400 {
				value, _, ev := g.Next(nil)
				if off%25 == 24 {
					value = malformed[(off/25)%int64(len(malformed))]
					exp.AddBad(part, off)
				} else {
					exp.AddGood(part, off)
				}
				p.Append(value, lake.PositionOf(off), ev.TS)
				off++
			}
			ingesttest.Commit(ctx, t, p)
		}
		p.Close()
	}
	links, err := lake.NewCommitLog(b).Records(ctx, table)
	if err != nil {
		t.Fatal(err)
	}
	var recs []lake.CommitRecord
	for _, r := range links {
		if r.Kind == lake.LinkData {
			recs = append(recs, r)
		}
	}
	if len(recs) != 9 || len(links) != 12 {
		t.Fatalf("%d links with data of %d, want 9 of 12 (a genesis per partition)", len(recs), len(links))
	}
	return &committedLake{b: b, exp: exp, recs: recs}
}

func (l *committedLake) object(t *testing.T, rec int, kind string, nth int) lake.CommittedObject {
	t.Helper()
	for _, o := range l.recs[rec].Objects {
		if o.Kind == kind {
			if nth == 0 {
				return o
			}
			nth--
		}
	}
	t.Fatalf("record %d has no %s object", rec, kind)
	return lake.CommittedObject{}
}

func (l *committedLake) get(t *testing.T, key string) []byte {
	t.Helper()
	rc, err := l.b.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func (l *committedLake) put(t *testing.T, key string, data []byte) {
	t.Helper()
	if err := l.b.Put(context.Background(), key, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
}

func (l *committedLake) del(t *testing.T, key string) {
	t.Helper()
	if err := l.b.Delete(context.Background(), key); err != nil {
		t.Fatal(err)
	}
}

func recordKey(r lake.CommitRecord) string { return lake.RecordKey(r) }

// rewriteParquet replaces a raw object by edit(rows), in its own schema.
func (l *committedLake) rewriteParquet(t *testing.T, key string, edit func(s *parquet.Schema, rows []parquet.Row) []parquet.Row) {
	t.Helper()
	s, rows := l.readRows(t, key)
	rows = edit(s, rows)
	var out bytes.Buffer
	pw := parquet.NewWriter(&out, s)
	if _, err := pw.WriteRows(rows); err != nil {
		t.Fatal(err)
	}
	if err := pw.Close(); err != nil {
		t.Fatal(err)
	}
	l.put(t, key, out.Bytes())
}

// readRows reads every row of a raw object.
func (l *committedLake) readRows(t *testing.T, key string) (*parquet.Schema, []parquet.Row) {
	t.Helper()
	data := l.get(t, key)
	f, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	var rows []parquet.Row
	for _, rg := range f.RowGroups() {
		rr := rg.Rows()
		buf := make([]parquet.Row, 64)
		for {
			n, err := rr.ReadRows(buf)
			for _, r := range buf[:n] {
				rows = append(rows, r.Clone())
			}
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		rr.Close()
	}
	return f.Schema(), rows
}

// offsetOfRow returns the _offset of a row.
func offsetOfRow(t *testing.T, s *parquet.Schema, row parquet.Row) int64 {
	t.Helper()
	leaf, _ := s.Lookup(verify.ColOffset)
	for _, v := range row {
		if v.Column() == leaf.ColumnIndex {
			return v.Int64()
		}
	}
	t.Fatal("row without _offset")
	return 0
}

type want struct {
	lost, duplicated, extra, unexpected, misfiled int64
	issues                                        map[string]int64
	anomalies                                     bool
	dupEventIDs                                   int64
	examples                                      []verify.Position // each must be among the examples of some finding
}

func TestVerifyPlantedFaults(t *testing.T) {
	tests := []struct {
		name string
		// plant edits the committedLake and returns what the report must say; it may
		// also change what was produced.
		plant func(t *testing.T, l *committedLake) want
	}{
		{
			name:  "clean",
			plant: func(t *testing.T, l *committedLake) want { return want{} },
		},
		{
			name: "committed raw object deleted",
			plant: func(t *testing.T, l *committedLake) want {
				o := l.object(t, 4, lake.KindRaw, 0)
				l.del(t, o.Key)
				return want{lost: o.Rows, issues: map[string]int64{verify.IssueMissingObject: 1}}
			},
		},
		{
			name: "committed dead-letter object deleted",
			plant: func(t *testing.T, l *committedLake) want {
				o := l.object(t, 2, lake.KindDeadLetter, 0)
				l.del(t, o.Key)
				return want{lost: o.Rows, issues: map[string]int64{verify.IssueMissingObject: 1}}
			},
		},
		{
			name: "object named by two records",
			plant: func(t *testing.T, l *committedLake) want {
				// The last record of partition 0 also claims an object of its
				// first record, consistently with its counts.
				o := l.object(t, 0, lake.KindRaw, 0)
				rec := l.recs[2]
				rec.Objects = append(rec.Objects, o)
				rec.Records += o.Rows
				data, err := json.Marshal(rec)
				if err != nil {
					t.Fatal(err)
				}
				l.put(t, recordKey(rec), data)
				return want{duplicated: o.Rows, extra: o.Rows, dupEventIDs: o.Rows, issues: map[string]int64{verify.IssueOffsetRange: 1},
					examples: []verify.Position{{Partition: "0", Offset: firstOffsetIn(t, l, o.Key)}}}
			},
		},
		{
			name: "row duplicated inside an object",
			plant: func(t *testing.T, l *committedLake) want {
				o := l.object(t, 7, lake.KindRaw, 0)
				var dup int64
				l.rewriteParquet(t, o.Key, func(s *parquet.Schema, rows []parquet.Row) []parquet.Row {
					dup = offsetOfRow(t, s, rows[3])
					return append(rows, rows[3].Clone())
				})
				return want{duplicated: 1, extra: 1, dupEventIDs: 1, issues: map[string]int64{verify.IssueRowCount: 1, verify.IssueSize: 1},
					examples: []verify.Position{{Partition: "2", Offset: dup}}}
			},
		},
		{
			name: "row missing from a raw object",
			plant: func(t *testing.T, l *committedLake) want {
				o := l.object(t, 5, lake.KindRaw, 0)
				var gone int64
				l.rewriteParquet(t, o.Key, func(s *parquet.Schema, rows []parquet.Row) []parquet.Row {
					gone = offsetOfRow(t, s, rows[10])
					return slices.Delete(rows, 10, 11)
				})
				return want{lost: 1, issues: map[string]int64{verify.IssueRowCount: 1, verify.IssueSize: 1},
					examples: []verify.Position{{Partition: "1", Offset: gone}}}
			},
		},
		{
			name: "row claims another partition",
			plant: func(t *testing.T, l *committedLake) want {
				o := l.object(t, 1, lake.KindRaw, 0)
				var off int64
				l.rewriteParquet(t, o.Key, func(s *parquet.Schema, rows []parquet.Row) []parquet.Row {
					leaf, _ := s.Lookup(verify.ColPartition)
					off = offsetOfRow(t, s, rows[0])
					for i, v := range rows[0] {
						if v.Column() == leaf.ColumnIndex {
							rows[0][i] = parquet.ByteArrayValue([]byte("9")).Level(0, 0, leaf.ColumnIndex)
						}
					}
					return rows
				})
				return want{lost: 1, unexpected: 1, issues: map[string]int64{verify.IssuePartition: 1, verify.IssueSize: 1},
					examples: []verify.Position{{Partition: "0", Offset: off}, {Partition: "9", Offset: off}}}
			},
		},
		{
			name: "good record filed as a dead letter",
			plant: func(t *testing.T, l *committedLake) want {
				// The first dead letter of partition 1 now names the good
				// record before it: that one is misfiled and twice
				// committed, the malformed one lost.
				o := l.object(t, 3, lake.KindDeadLetter, 0)
				data := l.get(t, o.Key)
				lines := bytes.SplitAfter(data, []byte("\n"))
				var dl map[string]any
				if err := json.Unmarshal(lines[0], &dl); err != nil {
					t.Fatal(err)
				}
				bad := int64(dl["offset"].(float64))
				dl["offset"] = bad - 1
				line, _ := json.Marshal(dl)
				lines[0] = append(line, '\n')
				l.put(t, o.Key, bytes.Join(lines, nil))
				// Same length: the size still matches the record, the
				// checksum does not.
				return want{lost: 1, duplicated: 1, extra: 1, misfiled: 1, issues: map[string]int64{verify.IssueChecksum: 1},
					examples: []verify.Position{{Partition: "1", Offset: bad}, {Partition: "1", Offset: bad - 1}}}
			},
		},
		{
			name: "commit record deleted from the middle of a chain",
			plant: func(t *testing.T, l *committedLake) want {
				// Readers stop at the gap: both later links are off the chain.
				l.del(t, recordKey(l.recs[7]))
				r := l.recs[7]
				return want{lost: nextOf(l.recs[7]) - firstOf(r) + nextOf(l.recs[8]) - firstOf(l.recs[8]), anomalies: true,
					examples: []verify.Position{{Partition: "2", Offset: firstOf(r)}}}
			},
		},
		{
			name: "record committed that was never produced",
			plant: func(t *testing.T, l *committedLake) want {
				// Nothing in the bucket changes: the producer's list lacks
				// partition 2's last record.
				exp := verify.NewExpected()
				last := nextOf(l.recs[8]) - 1
				for _, p := range partitions {
					for o := range int64(1200) {
						if p == "2" && o == last {
							continue
						}
						if o%25 == 24 {
							exp.AddBad(p, o)
						} else {
							exp.AddGood(p, o)
						}
					}
				}
				l.exp = exp
				return want{unexpected: 1, examples: []verify.Position{{Partition: "2", Offset: last}}}
			},
		},
	}
	// Repeated event ids are found by hash, or by the producers' own
	// numbering of their ids: both must count the same.
	modes := []struct {
		name  string
		index func([]byte) (uint64, bool)
	}{{"hashed ids", nil}, {"numbered ids", producersEventIDs(t, 1, 2, 3).Index}}
	for _, tc := range tests {
		for _, mode := range modes {
			t.Run(tc.name+"/"+mode.name, func(t *testing.T) {
				l := writeLake(t)
				w := tc.plant(t, l)
				got, err := verify.ReadCommitted(context.Background(), l.b, table,
					verify.Options{EventIDColumn: "event_id", EventIndex: mode.index})
				if err != nil {
					t.Fatal(err)
				}
				rep := verify.Compare(l.exp, got)
				t.Logf("\n%s", rep)
				check := func(what string, got, want int64) {
					if got != want {
						t.Errorf("%s = %d, want %d", what, got, want)
					}
				}
				check("lost", rep.Lost.Positions, w.lost)
				check("duplicated", rep.Duplicated.Positions, w.duplicated)
				check("extra copies", rep.ExtraCopies, w.extra)
				check("unexpected", rep.Unexpected.Positions, w.unexpected)
				check("misfiled", rep.Misfiled.Positions, w.misfiled)
				for kind, n := range w.issues {
					check("issues of kind "+kind, rep.IssueCounts[kind], n)
				}
				for kind, n := range rep.IssueCounts {
					if _, ok := w.issues[kind]; !ok {
						t.Errorf("unexpected issues of kind %s: %d", kind, n)
					}
				}
				if (rep.Anomalies > 0) != w.anomalies {
					t.Errorf("anomalies = %d, want some: %v", rep.Anomalies, w.anomalies)
				}
				for _, p := range w.examples {
					if !hasExample(rep, p) {
						t.Errorf("position %s is not among the report's examples", p)
					}
				}
				clean := w.lost+w.duplicated+w.unexpected+w.misfiled == 0 && len(w.issues) == 0
				if rep.OK() != clean {
					t.Errorf("OK() = %v, want %v", rep.OK(), clean)
				}
				check("duplicate event ids", rep.DuplicateEventIDs, w.dupEventIDs)
				check("unknown event ids", rep.UnknownEventIDs, 0)
				if clean {
					good, bad := l.exp.Counts()
					check("committed rows", rep.CommittedRows, good)
					check("committed dead letters", rep.CommittedDeadLetters, bad)
					check("expected good", rep.ExpectedGood, good)
					check("expected bad", rep.ExpectedBad, bad)
					check("distinct positions", rep.CommittedPositions, good+bad)
				}
			})
		}
	}
}

// producersEventIDs numbers the event ids of the generators writeLake uses
// (by seed).
func producersEventIDs(t *testing.T, seeds ...int64) *gen.EventIDs {
	t.Helper()
	var keys []uint64
	for _, seed := range seeds {
		g, err := gen.New(gen.Config{Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, g.EventIDKey())
	}
	return gen.NewEventIDs(keys...)
}

// Rows whose event id no registered producer made are counted, not
// numbered: here every good row of partition 2, whose generator is left out.
func TestUnknownEventIDsAreCounted(t *testing.T) {
	l := writeLake(t)
	got, err := verify.ReadCommitted(context.Background(), l.b, table,
		verify.Options{EventIDColumn: "event_id", EventIndex: producersEventIDs(t, 1, 2).Index})
	if err != nil {
		t.Fatal(err)
	}
	rep := verify.Compare(l.exp, got)
	want := int64(1200 - 1200/25) // partition 2's good rows
	if rep.UnknownEventIDs != want || rep.DuplicateEventIDs != 0 || !rep.OK() {
		t.Fatalf("unknown ids %d (want %d), repeated %d, OK %v", rep.UnknownEventIDs, want, rep.DuplicateEventIDs, rep.OK())
	}
}

func hasExample(rep verify.Report, p verify.Position) bool {
	for _, f := range []verify.Finding{rep.Lost, rep.Duplicated, rep.Unexpected, rep.Misfiled} {
		if slices.Contains(f.Examples, p) {
			return true
		}
	}
	return false
}

// firstOffsetIn returns the lowest _offset of a raw object.
func firstOffsetIn(t *testing.T, l *committedLake, key string) int64 {
	t.Helper()
	lowest := int64(-1)
	s, rows := l.readRows(t, key)
	for _, r := range rows {
		if o := offsetOfRow(t, s, r); lowest < 0 || o < lowest {
			lowest = o
		}
	}
	return lowest
}

func TestReadCommittedNeedsSourceWhenSeveral(t *testing.T) {
	l := writeLake(t)
	// A second source's chain in the same table, e.g. the HTTP endpoint.
	genesis := lake.CommitRecord{Version: lake.CommitRecordVersion, Table: table, Source: "http:ingest", Partition: l.recs[0].Partition,
		Kind: lake.LinkGenesis, First: l.recs[0].First, Next: l.recs[0].First, Objects: []lake.CommittedObject{}}
	rec := l.recs[0]
	rec.Source = "http:ingest"
	for _, r := range []lake.CommitRecord{genesis, rec} {
		data, _ := json.Marshal(r)
		l.put(t, recordKey(r), data)
	}

	ctx := context.Background()
	if _, err := verify.ReadCommitted(ctx, l.b, table, verify.Options{}); err == nil {
		t.Fatal("no error for a table with two sources and no Options.Source")
	}
	got, err := verify.ReadCommitted(ctx, l.b, table, verify.Options{Source: source})
	if err != nil {
		t.Fatal(err)
	}
	if rep := verify.Compare(l.exp, got); !rep.OK() {
		t.Fatalf("with Source set, the kafka chain alone must verify:\n%s", rep)
	}
}

func TestReadCommittedEmptyTable(t *testing.T) {
	b := objstoretest.NewLocal(t)
	got, err := verify.ReadCommitted(context.Background(), b, table, verify.Options{})
	if err != nil {
		t.Fatal(err)
	}
	exp := verify.NewExpected()
	if rep := verify.Compare(exp, got); !rep.OK() || rep.CommittedRows != 0 {
		t.Fatalf("empty table vs nothing produced:\n%s", rep)
	}
	exp.AddGood("0", 0)
	exp.AddBad("0", 1)
	rep := verify.Compare(exp, got)
	if rep.OK() || rep.Lost.Positions != 2 {
		t.Fatalf("two produced, nothing committed: want 2 lost:\n%s", rep)
	}
	if _, err := verify.ReadCommitted(context.Background(), b, "_bad/table", verify.Options{}); err == nil {
		t.Fatal("no error for an invalid table name")
	}
}

func TestExpectedEnds(t *testing.T) {
	exp := verify.NewExpected()
	for o := range int64(10) {
		exp.AddGood("3", o)
	}
	exp.AddBad("3", 12)
	exp.AddGood("11", 4)
	want := map[string]int64{"3": 13, "11": 5}
	got := exp.Ends()
	if len(got) != len(want) {
		t.Fatalf("ends %v, want %v", got, want)
	}
	for p, e := range want {
		if got[p] != e {
			t.Fatalf("ends %v, want %v", got, want)
		}
	}
	if g, b := exp.Counts(); g != 11 || b != 1 {
		t.Fatalf("counts %d good, %d bad; want 11, 1", g, b)
	}
}

func firstOf(r lake.CommitRecord) int64 { f, _ := r.Offsets(); return f }
func nextOf(r lake.CommitRecord) int64  { _, n := r.Offsets(); return n }

func TestExpectedForgetAndMerge(t *testing.T) {
	exp := verify.NewExpected()
	for o := range int64(10) {
		exp.AddGood("0", o)
	}
	exp.AddBad("0", 10)
	exp.AddGood("0", 11)
	exp.AddGood("1", 3)
	if g, b := exp.Forget("0", 4, 11); g != 6 || b != 1 {
		t.Fatalf("forgot %d good, %d bad; want 6, 1", g, b)
	}
	if g, b := exp.Forget("2", 0, 100); g != 0 || b != 0 {
		t.Fatalf("forgot %d good, %d bad of an unknown partition", g, b)
	}
	other := verify.NewExpected()
	other.AddGood("1", 4)
	other.AddBad("5", 0)
	exp.Merge(other)
	if g, b := exp.Counts(); g != 7 || b != 1 {
		t.Fatalf("counts %d good, %d bad; want 7, 1", g, b)
	}
	if got := exp.Ends(); got["0"] != 12 || got["1"] != 5 || got["5"] != 1 {
		t.Fatalf("ends %v", got)
	}
}

func TestReadCommittedOfOneIncarnation(t *testing.T) {
	l := writeLake(t)
	ctx := context.Background()
	got, err := verify.ReadCommitted(ctx, l.b, table, verify.Options{SourceID: "verify-test"})
	if err != nil {
		t.Fatal(err)
	}
	if rep := verify.Compare(l.exp, got); !rep.OK() || got.Records != len(l.recs) {
		t.Fatalf("the incarnation every link is of: %d records\n%s", got.Records, rep)
	}
	got, err = verify.ReadCommitted(ctx, l.b, table, verify.Options{SourceID: "another-topic-id"})
	if err != nil {
		t.Fatal(err)
	}
	good, bad := l.exp.Counts()
	if rep := verify.Compare(l.exp, got); got.Records != 0 || rep.Lost.Positions != good+bad {
		t.Fatalf("an incarnation with no links: %d records, %d lost, want 0 and %d", got.Records, rep.Lost.Positions, good+bad)
	}
}
