package inbox_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/parquet-go/parquet-go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/ingest"
	"github.com/sluicehq/sluice/ingest/inbox"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/schema"
)

// The tests' fixture: a table per format, files generated with known rows
// and bad lines, and a verifier that checks the committed set against the
// files alone (it recomputes where each line lands: its split and position).

const tablesYAML = `
tables:
  - name: ev
    inbox: {prefix: in/ev/, format: jsonl}
    event_time: {field: ts, max_future: 87600h}
    fields:
      - {name: ts, type: timestamp, format: rfc3339}
      - {name: id, type: string}
      - {name: user, type: string}
      - {name: amount, type: float64}
    rollup:
      windows: [1m, 1h]
      dimensions: [user]
      allowed_lateness: 1s
      late_horizon: 87600h
      measures:
        - {name: events, kind: count}
        - {name: amount_sum, kind: sum, field: amount}
        - {name: users, kind: distinct, field: user, precision: 12}
  - name: cv
    inbox: {prefix: in/cv/, format: csv}
    event_time: {field: ts, max_future: 87600h}
    fields:
      - {name: ts, type: timestamp, format: rfc3339}
      - {name: id, type: string}
      - {name: user, type: string}
      - {name: amount, type: float64}
  - name: pq
    inbox: {prefix: in/pq/, format: parquet}
    event_time: {field: ts, max_future: 87600h}
    fields:
      - {name: ts, type: timestamp, format: rfc3339}
      - {name: id, type: string}
      - {name: user, type: string}
      - {name: amount, type: float64}
`

func testTables(t testing.TB) map[string]*schema.Table {
	ts, err := schema.Parse([]byte(tablesYAML), "test.yaml")
	if err != nil {
		panic(err) // the fixture is constant
	}
	out := map[string]*schema.Table{}
	for _, tb := range ts {
		out[tb.Name] = tb
	}
	return out
}

func tableList(m map[string]*schema.Table, names ...string) []*schema.Table {
	var out []*schema.Table
	for _, n := range names {
		out = append(out, m[n])
	}
	return out
}

type row struct {
	ID     string
	User   string
	Amount float64
	TS     int64 // micros
}

// genFile is one generated input file and what must come of it.
type genFile struct {
	Table  string
	Key    string
	Format string
	Comp   string
	Data   []byte   // as stored
	Lines  [][]byte // uncompressed lines (jsonl, csv; csv with its header)
	Starts []int64  // byte offset of each line in the uncompressed file
	Good   map[int]row
	Bad    map[int]bool // 0-based line (or row) indexes that must be dead letters
	Groups []int        // parquet: rows per row group
}

var baseTime = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

// genLines makes n lines: good rows and, with probability badRate, bad ones
// of several kinds; blank lines now and then, CRLF in some files.
func genLines(rng *rand.Rand, fileNo, n int, badRate float64, csv bool) (lines [][]byte, good map[int]row, bad map[int]bool) {
	good, bad = map[int]row{}, map[int]bool{}
	if csv {
		lines = append(lines, []byte("ts,id,user,amount"))
	}
	for i := 0; i < n; i++ {
		idx := len(lines)
		r := row{ID: fmt.Sprintf("f%d-l%d", fileNo, idx), User: fmt.Sprintf("u%d", rng.IntN(20)),
			Amount: float64(rng.IntN(100000)) / 100, TS: baseTime.Add(time.Duration(rng.IntN(3*3600)) * time.Second).UnixMicro()}
		ts := time.UnixMicro(r.TS).UTC().Format(time.RFC3339)
		switch {
		case rng.Float64() < badRate:
			bad[idx] = true
			switch rng.IntN(3) {
			case 0:
				if csv {
					lines = append(lines, []byte(`"unterminated,quote`))
				} else {
					lines = append(lines, []byte(`{"ts": "`+ts+`", "id": broken`))
				}
			case 1:
				if csv {
					lines = append(lines, fmt.Appendf(nil, "not-a-time,%s,%s,%g", r.ID, r.User, r.Amount))
				} else {
					lines = append(lines, fmt.Appendf(nil, `{"ts":"not-a-time","id":%q,"user":%q,"amount":%g}`, r.ID, r.User, r.Amount))
				}
			default:
				if csv {
					lines = append(lines, fmt.Appendf(nil, "%s,%s,%s,lots", ts, r.ID, r.User))
				} else {
					lines = append(lines, fmt.Appendf(nil, `{"ts":%q,"id":%q,"amount":%g}`, ts, r.ID, r.Amount))
				}
			}
		case rng.IntN(200) == 0:
			lines = append(lines, []byte("   "))
		default:
			good[idx] = r
			if csv {
				lines = append(lines, fmt.Appendf(nil, "%s,%s,%s,%g", ts, r.ID, r.User, r.Amount))
			} else {
				lines = append(lines, fmt.Appendf(nil, `{"ts":%q,"id":%q,"user":%q,"amount":%g}`, ts, r.ID, r.User, r.Amount))
			}
		}
	}
	return lines, good, bad
}

func joinLines(lines [][]byte, crlf, trailing bool) ([]byte, []int64) {
	var buf bytes.Buffer
	starts := make([]int64, len(lines))
	for i, l := range lines {
		starts[i] = int64(buf.Len())
		buf.Write(l)
		if i < len(lines)-1 || trailing {
			if crlf {
				buf.WriteString("\r\n")
			} else {
				buf.WriteByte('\n')
			}
		}
	}
	return buf.Bytes(), starts
}

func compress(t testing.TB, data []byte, comp string) []byte {
	var buf bytes.Buffer
	switch comp {
	case "gzip":
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
		zw.Write(data)
		zw.Close()
	case "zstd":
		zw, err := zstd.NewWriter(&buf, zstd.WithEncoderLevel(zstd.SpeedFastest))
		if err != nil {
			t.Fatal(err)
		}
		zw.Write(data)
		zw.Close()
	default:
		return data
	}
	return buf.Bytes()
}

// textFile generates a JSON lines or CSV file of about n lines.
func textFile(t testing.TB, rng *rand.Rand, table string, fileNo, n int, badRate float64, comp string) genFile {
	csv := table == "cv"
	lines, good, bad := genLines(rng, fileNo, n, badRate, csv)
	data, starts := joinLines(lines, rng.IntN(4) == 0, rng.IntN(3) != 0)
	ext := ".jsonl"
	if csv {
		ext = ".csv"
	}
	switch comp {
	case "gzip":
		ext += ".gz"
	case "zstd":
		ext += ".zst"
	}
	format := "jsonl"
	if csv {
		format = "csv"
	}
	return genFile{Table: table, Key: fmt.Sprintf("in/%s/%s/file-%05d%s", table, time.Now().Format("2006"), fileNo, ext), Format: format,
		Comp: comp, Data: compress(t, data, comp), Lines: lines, Starts: starts, Good: good, Bad: bad}
}

type pqRow struct {
	TS     int64   `parquet:"ts,timestamp(microsecond)"`
	ID     string  `parquet:"id"`
	User   string  `parquet:"user"`
	Amount float64 `parquet:"amount"`
}

// parquetFile generates a Parquet file of n rows in row groups of perGroup;
// every 37th row (from the 6th) has an absurd event time: a dead letter.
func parquetFile(t testing.TB, rng *rand.Rand, fileNo, n, perGroup int) genFile {
	var buf bytes.Buffer
	w := parquet.NewGenericWriter[pqRow](&buf, parquet.MaxRowsPerRowGroup(int64(perGroup)))
	g := genFile{Table: "pq", Key: fmt.Sprintf("in/pq/file-%05d.parquet", fileNo), Format: "parquet", Comp: "none",
		Good: map[int]row{}, Bad: map[int]bool{}}
	for i := 0; i < n; i++ {
		r := row{ID: fmt.Sprintf("f%d-l%d", fileNo, i), User: fmt.Sprintf("u%d", rng.IntN(20)),
			Amount: float64(rng.IntN(100000)) / 100, TS: baseTime.Add(time.Duration(rng.IntN(3*3600)) * time.Second).UnixMicro()}
		bad := i%37 == 5
		if bad {
			r.TS = baseTime.AddDate(100, 0, 0).UnixMicro()
		}
		if _, err := w.Write([]pqRow{{TS: r.TS, ID: r.ID, User: r.User, Amount: r.Amount}}); err != nil {
			t.Fatal(err)
		}
		if bad {
			g.Bad[i] = true
		} else {
			g.Good[i] = r
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	for left := n; left > 0; left -= perGroup {
		g.Groups = append(g.Groups, min(left, perGroup))
	}
	g.Data = buf.Bytes()
	return g
}

// locations returns where each line must land: its split and position,
// computed from the file alone with the split rule (lines starting in a
// split's byte range belong to it; compressed files are one split).
func (g genFile) locations(splitBytes int64) map[int][2]int64 {
	out := map[int][2]int64{}
	if g.Format == "parquet" {
		i := 0
		for gi, n := range g.Groups {
			for p := range n {
				out[i] = [2]int64{int64(gi), int64(p)}
				i++
			}
		}
		return out
	}
	whole := g.Comp != "none" || int64(len(g.Data)) <= splitBytes
	split, pos := int64(0), int64(0)
	for i, start := range g.Starts {
		if !whole && start/splitBytes != split {
			split, pos = start/splitBytes, 0
		}
		out[i] = [2]int64{split, pos}
		pos++
	}
	return out
}

func put(t testing.TB, b objstore.Bucket, key string, data []byte) {
	t.Helper()
	if err := b.Put(context.Background(), key, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

// verdict is what the verifier found.
type verdict struct {
	Rows, Dead    int
	Missing       []string
	Duplicates    []string
	Wrong         []string
	Unexpected    []string
	MissingDead   []string
	DuplicateDead []string
	Misplaced     []string // dead letters whose place in the file is not their line's
}

func (v verdict) ok() bool {
	return len(v.Missing)+len(v.Duplicates)+len(v.Wrong)+len(v.Unexpected)+len(v.MissingDead)+len(v.DuplicateDead)+len(v.Misplaced) == 0
}

func (v verdict) String() string {
	cut := func(s []string) []string { return s[:min(len(s), 5)] }
	return fmt.Sprintf("rows %d, dead %d; missing %d %v, duplicates %d %v, wrong %d %v, unexpected %d %v, dead missing %d %v, dead twice %d %v, dead misplaced %d %v",
		v.Rows, v.Dead, len(v.Missing), cut(v.Missing), len(v.Duplicates), cut(v.Duplicates), len(v.Wrong), cut(v.Wrong),
		len(v.Unexpected), cut(v.Unexpected), len(v.MissingDead), cut(v.MissingDead), len(v.DuplicateDead), cut(v.DuplicateDead),
		len(v.Misplaced), cut(v.Misplaced))
}

// verify compares what readers of table see with the files: every good
// line is exactly one row with its values at its own (partition, offset),
// every bad line exactly one dead letter at its own position, nothing else;
// and each dead letter locates its line in the file itself (checked by
// slicing the uncompressed file at its file_offset), or its Parquet row.
func verify(t testing.TB, lakeB objstore.Bucket, table string, files []genFile, splitBytes int64, versions map[string]string) verdict {
	t.Helper()
	ctx := context.Background()
	type loc struct {
		part string
		pos  int64
	}
	wantRow := map[loc]row{}
	type badLine struct {
		what  string
		file  *genFile
		plain []byte // the uncompressed file
		index int    // 0-based line (or row) in the file
		split int64
	}
	wantDead := map[loc]badLine{}
	for fi := range files {
		g := files[fi]
		if g.Table != table {
			continue
		}
		plain := uncompress(t, g.Data, g.Comp)
		ver := versions[g.Key]
		locs := g.locations(splitBytes)
		names := map[int64]string{}
		part := func(split int64) string {
			if n, ok := names[split]; ok {
				return n
			}
			names[split] = inbox.PartitionName(g.Key, ver, int(split))
			return names[split]
		}
		for i, r := range g.Good {
			l := locs[i]
			wantRow[loc{part(l[0]), l[1]}] = r
		}
		for i := range g.Bad {
			l := locs[i]
			wantDead[loc{part(l[0]), l[1]}] = badLine{fmt.Sprintf("%s line %d", g.Key, i+1), &files[fi], plain, i, l[0]}
		}
	}
	log := lake.NewCommitLog(lakeB)
	live, err := log.LiveObjects(ctx, table)
	if err != nil {
		t.Fatal(err)
	}
	var v verdict
	seen := map[loc]int{}
	for _, o := range live {
		for _, r := range readRaw(t, lakeB, o.Key) {
			v.Rows++
			l := loc{r.part, r.off}
			seen[l]++
			want, ok := wantRow[l]
			switch {
			case !ok:
				v.Unexpected = append(v.Unexpected, fmt.Sprintf("%s@%d id %s", r.part, r.off, r.row.ID))
			case seen[l] == 2:
				v.Duplicates = append(v.Duplicates, fmt.Sprintf("%s@%d", r.part, r.off))
			case want != r.row:
				v.Wrong = append(v.Wrong, fmt.Sprintf("%s@%d: got %+v, want %+v", r.part, r.off, r.row, want))
			}
		}
	}
	for l, r := range wantRow {
		if seen[l] == 0 {
			v.Missing = append(v.Missing, fmt.Sprintf("%s@%d id %s", l.part, l.pos, r.ID))
		}
	}
	dead, err := log.LiveDeadLetters(ctx, table)
	if err != nil {
		t.Fatal(err)
	}
	seenDead := map[loc]int{}
	for _, o := range dead {
		rc, err := lakeB.Get(ctx, o.Key)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(rc)
		rc.Close()
		for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
			var dl struct {
				Partition  string        `json:"partition"`
				Position   lake.Position `json:"position"`
				Reason     string        `json:"reason"`
				File       string        `json:"file"`
				FileOffset *int64        `json:"file_offset"`
				FileLine   *int64        `json:"file_line"`
				FileRow    *int64        `json:"file_row"`
			}
			if err := json.Unmarshal(line, &dl); err != nil {
				t.Fatalf("dead letter in %s: %v", o.Key, err)
			}
			pos, _ := dl.Position.Int64()
			l := loc{dl.Partition, pos}
			v.Dead++
			seenDead[l]++
			want, ok := wantDead[l]
			if !ok {
				v.Unexpected = append(v.Unexpected, fmt.Sprintf("dead letter %s@%d (%s)", l.part, l.pos, dl.Reason))
				continue
			}
			if seenDead[l] == 2 {
				v.DuplicateDead = append(v.DuplicateDead, want.what)
			}
			if why := misplaced(want.file, want.plain, want.index, want.split, dl.File, dl.FileOffset, dl.FileLine, dl.FileRow); why != "" {
				v.Misplaced = append(v.Misplaced, want.what+": "+why)
			}
		}
	}
	for l, want := range wantDead {
		if seenDead[l] == 0 {
			v.MissingDead = append(v.MissingDead, want.what)
		}
	}
	return v
}

// misplaced says what is wrong with a dead letter's place in the file, for
// line (or row) index of g, which landed in split; "" when nothing is. A
// line's file_offset must slice plain (the file uncompressed) at exactly
// the line's bytes; its file_line is given for split 0 only, and a Parquet
// row has a file_row and no offset.
func misplaced(g *genFile, plain []byte, index int, split int64, file string, offset, line, row *int64) string {
	if file != g.Key {
		return fmt.Sprintf("file %q", file)
	}
	if g.Format == "parquet" {
		if offset != nil || line != nil || row == nil || *row != int64(index) {
			return fmt.Sprintf("offset %v line %v row %v, want row %d", ptr(offset), ptr(line), ptr(row), index)
		}
		return ""
	}
	if row != nil || offset == nil {
		return fmt.Sprintf("offset %v row %v", ptr(offset), ptr(row))
	}
	off := *offset
	want := g.Lines[index]
	if off < 0 || off+int64(len(want)) > int64(len(plain)) {
		return fmt.Sprintf("offset %d outside the file (%d bytes)", off, len(plain))
	}
	if off > 0 && plain[off-1] != '\n' {
		return fmt.Sprintf("offset %d is not at a line start", off)
	}
	got := plain[off:]
	if i := bytes.IndexByte(got, '\n'); i >= 0 {
		got = got[:i]
	}
	if got = bytes.TrimSuffix(got, []byte("\r")); !bytes.Equal(got, want) {
		return fmt.Sprintf("offset %d holds %q, want %q", off, got, want)
	}
	switch {
	case split == 0 && (line == nil || *line != int64(index)+1):
		return fmt.Sprintf("line %v, want %d", ptr(line), index+1)
	case split > 0 && line != nil:
		return fmt.Sprintf("line %d given in split %d, whose first line number is not known", *line, split)
	}
	return ""
}

func ptr(p *int64) any {
	if p == nil {
		return "none"
	}
	return *p
}

// uncompress returns data as the file's lines were written (the offsets of
// dead letters count bytes of the uncompressed stream).
func uncompress(t testing.TB, data []byte, comp string) []byte {
	t.Helper()
	var r io.Reader
	switch comp {
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		r = zr
	case "zstd":
		zr, err := zstd.NewReader(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		r = zr
	default:
		return data
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

type rawRow struct {
	part string
	off  int64
	row  row
}

func readRaw(t testing.TB, b objstore.Bucket, key string) []rawRow {
	t.Helper()
	rc, err := b.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(rc)
	rc.Close()
	f, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	idx := map[string]int{}
	for i, fld := range f.Schema().Fields() {
		idx[fld.Name()] = i
	}
	var out []rawRow
	for _, rg := range f.RowGroups() {
		rows := rg.Rows()
		buf := make([]parquet.Row, 128)
		for {
			n, err := rows.ReadRows(buf)
			for _, r := range buf[:n] {
				vals := make([]parquet.Value, len(idx))
				for _, v := range r {
					vals[v.Column()] = v
				}
				out = append(out, rawRow{
					part: string(vals[idx[schema.ColPartition]].ByteArray()),
					off:  vals[idx[schema.ColOffset]].Int64(),
					row: row{ID: string(vals[idx["id"]].ByteArray()), User: string(vals[idx["user"]].ByteArray()),
						Amount: vals[idx["amount"]].Double(), TS: vals[idx["ts"]].Int64()},
				})
			}
			if err != nil {
				break
			}
		}
		rows.Close()
	}
	return out
}

// versionsOf reads each file's version as the source sees it.
func versionsOf(t testing.TB, b objstore.Bucket, files []genFile) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, g := range files {
		a, err := b.Attributes(context.Background(), g.Key)
		if err != nil {
			t.Fatal(err)
		}
		if a.ETag != "" {
			out[g.Key] = a.ETag
		} else {
			out[g.Key] = fmt.Sprintf("s%d-t%d", a.Size, a.LastModified.UnixNano())
		}
	}
	return out
}

// runPass runs one batch pass in this process.
func runPass(t testing.TB, ctx context.Context, lakeB, inboxB objstore.Bucket, tables []*schema.Table, cfg inbox.Config) inbox.Stats {
	t.Helper()
	reg := prometheus.NewRegistry()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	w, err := ingest.NewWriter(ingest.WriterConfig{FlushRecords: 50_000, FlushBytes: 8 << 20, FlushInterval: time.Minute, Workers: 2}, lakeB, logger, ingest.NewMetrics(reg))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	src, err := inbox.NewSource(cfg, tables, lakeB, func(string) (objstore.Bucket, error) { return inboxB, nil }, w, logger, inbox.NewMetrics(reg))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	st, err := src.Pass(ctx)
	if err != nil {
		t.Fatalf("pass: %v", err)
	}
	return st
}

func namesOf(files []genFile) string {
	var s []string
	for _, f := range files {
		s = append(s, f.Key)
	}
	return strings.Join(s, " ")
}
