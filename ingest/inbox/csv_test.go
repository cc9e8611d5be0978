package inbox_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/ingest"
	"github.com/sluicehq/sluice/ingest/inbox"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/objstore/objstoretest"
)

// csvRecord is one record as the source delivers it: the decoded fields
// and where the record starts in the file.
type csvRecord struct {
	ID, User string
	Offset   int64
	Line     int64 // 0 where the source does not know it
}

// readCSVSplits plans the file as the source does and reads every split.
func readCSVSplits(t *testing.T, b objstore.Bucket, key string, size int64, maxRecord int, splitBytes int64) (recs []csvRecord, splits []inbox.Split) {
	t.Helper()
	tbl := *testTables(t)["cv"]
	tbl.MaxRecordBytes = maxRecord
	e := inbox.Entry{Key: key, Size: size, Format: "csv"}
	comp, splits, err := inbox.Plan(context.Background(), b, &tbl, e, splitBytes)
	if err != nil {
		t.Fatal(err)
	}
	e.Compression = comp
	for _, sp := range splits {
		_, _, err := inbox.EachRecord(context.Background(), b, &tbl, e, sp, func(v []byte, _ int64, at ingest.Location) error {
			var obj map[string]any
			if err := json.Unmarshal(v, &obj); err != nil {
				recs = append(recs, csvRecord{ID: "!unconverted", User: string(v), Offset: at.Offset, Line: at.Line})
				return nil
			}
			id, _ := obj["id"].(string)
			user, _ := obj["user"].(string)
			recs = append(recs, csvRecord{ID: id, User: user, Offset: at.Offset, Line: at.Line})
			return nil
		})
		if err != nil {
			t.Fatalf("split %d [%d, %d): %v", sp.Index, sp.Start, sp.End, err)
		}
	}
	return recs, splits
}

// A CSV field may hold newlines inside quotes (RFC 4180). Every record
// comes out whole and once, whatever the split size, although a byte range
// may begin inside a quoted field; the truth is Go's encoding/csv reading
// the whole file, and each record's offset and line point at its first
// byte in the file.
func TestCSVQuotedNewlinesAcrossSplits(t *testing.T) {
	b := objstoretest.NewLocal(t)
	rng := rand.New(rand.NewPCG(7, 11))
	var data bytes.Buffer
	data.WriteString("ts,id,user,amount\n")
	fields := []string{`plain`, "two\nlines", "crlf\r\ninside", `say ""hi""`, "a,b\n\nc", "\"\"\n\"\"", `x`}
	for i := range 300 {
		user := fields[rng.IntN(len(fields))]
		eol := "\n"
		if i%7 == 0 {
			eol = "\r\n"
		}
		if strings.ContainsAny(user, "\n,\"") {
			user = `"` + user + `"`
		}
		fmt.Fprintf(&data, "2026-11-20T10:00:00Z,r%d,%s,1.5%s", i, user, eol)
		if i%50 == 0 {
			data.WriteString("\n") // a blank line, which is no record
		}
	}
	text := data.Bytes()
	put(t, b, "in/cv/quoted.csv", text)

	truth, err := csv.NewReader(bytes.NewReader(text)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	truth = truth[1:] // the header
	for _, splitBytes := range []int64{int64(len(text)) + 1, 4000, 997, 101, 37, 13} {
		recs, splits := readCSVSplits(t, b, "in/cv/quoted.csv", int64(len(text)), 1<<20, splitBytes)
		if splitBytes < int64(len(text)) && len(splits) < 2 {
			t.Fatalf("split size %d: %d splits, want several", splitBytes, len(splits))
		}
		if len(recs) != len(truth) {
			t.Fatalf("split size %d (%d splits): %d records, encoding/csv reads %d", splitBytes, len(splits), len(recs), len(truth))
		}
		for i, r := range recs {
			if r.ID != truth[i][1] || r.User != truth[i][2] {
				t.Fatalf("split size %d: record %d = %q %q, want %q %q", splitBytes, i, r.ID, r.User, truth[i][1], truth[i][2])
			}
			if prefix := "2026-11-20T10:00:00Z," + r.ID + ","; !bytes.HasPrefix(text[r.Offset:], []byte(prefix)) {
				t.Fatalf("split size %d: record %s at offset %d, where the file has %q", splitBytes, r.ID, r.Offset, text[r.Offset:min(len(text), int(r.Offset)+40)])
			}
			if r.Line != 0 {
				if want := int64(bytes.Count(text[:r.Offset], []byte("\n"))) + 1; r.Line != want {
					t.Fatalf("split size %d: record %s on line %d, the file has it on line %d", splitBytes, r.ID, r.Line, want)
				}
			}
		}
	}
}

// A stray quote (a malformed line) costs that line only: the record does
// not swallow the lines after it, whether the quote is never closed or a
// later stray quote would close it, and every split plan agrees.
func TestCSVStrayQuoteCostsItsLineOnly(t *testing.T) {
	b := objstoretest.NewLocal(t)
	var data bytes.Buffer
	data.WriteString("ts,id,user,amount\n")
	for i := range 60 {
		switch i {
		case 5:
			data.WriteString("2026-11-20T10:00:00Z,bad1,\"opened here,1.5\n")
		case 20:
			data.WriteString("\"bad2 closes bad1 or opens again\n")
		case 40:
			data.WriteString("2026-11-20T10:00:00Z,bad3,\"never closed,1.5\n")
		}
		fmt.Fprintf(&data, "2026-11-20T10:00:00Z,r%d,u,1.5\n", i)
	}
	text := data.Bytes()
	put(t, b, "in/cv/stray.csv", text)
	for _, limit := range []int{200, 1 << 20} {
		whole, _ := readCSVSplits(t, b, "in/cv/stray.csv", int64(len(text)), limit, int64(len(text))+1)
		var good, bad int
		for _, r := range whole {
			if r.ID == "!unconverted" {
				bad++
			} else if strings.HasPrefix(r.ID, "r") {
				good++
			}
		}
		if good != 60 || bad != 3 || len(whole) != 63 {
			t.Fatalf("record limit %d: %d records, %d good (want 60), %d refused (want 3): %v", limit, len(whole), good, bad, whole)
		}
		for _, splitBytes := range []int64{300, 101, 29} {
			recs, _ := readCSVSplits(t, b, "in/cv/stray.csv", int64(len(text)), limit, splitBytes)
			for i := range min(len(recs), len(whole)) {
				recs[i].Line = whole[i].Line // only split 0 knows its lines
			}
			if fmt.Sprint(recs) != fmt.Sprint(whole) {
				t.Fatalf("record limit %d, split size %d:\n got %v\nwant %v", limit, splitBytes, recs, whole)
			}
		}
	}
}
