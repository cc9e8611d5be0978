package batch_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/sluicehq/sluice/batch"
	"github.com/sluicehq/sluice/loadtest/gen"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/objstore/objstoretest"
)

// A run's dead letters locate each bad line in the file itself: its
// file_offset slices the (uncompressed) file at exactly the line, in every
// split of a plain file and in a gzip file; file_line is given where the
// split starts the file.
func TestRunDeadLettersLocateTheLine(t *testing.T) {
	tbl := inboxEvents(t)
	inB, stateB, sumB := objstoretest.NewLocal(t), objstoretest.NewLocal(t), objstoretest.NewLocal(t)
	g, err := gen.New(gen.Config{Seed: 5, Start: time.Date(2026, 3, 14, 21, 30, 0, 0, time.UTC), EventsPerSecond: 2, Users: 100})
	if err != nil {
		t.Fatal(err)
	}
	var plain bytes.Buffer
	var buf []byte
	bad := map[string]bool{} // the bad lines, each distinct
	for i := range 3000 {
		if i%150 == 7 {
			line := fmt.Sprintf(`{"broken": %d`, i)
			bad[line] = true
			plain.WriteString(line + "\n")
			continue
		}
		value, _, _ := g.Next(buf[:0])
		buf = value
		plain.Write(value)
		plain.WriteByte('\n')
	}
	var zipped bytes.Buffer
	zw := gzip.NewWriter(&zipped)
	zw.Write(plain.Bytes())
	zw.Close()
	files := map[string][]byte{"drop/big.jsonl": plain.Bytes(), "drop/big.jsonl.gz": zipped.Bytes()}
	for key, data := range files {
		if err := inB.Put(t.Context(), key, bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatal(err)
		}
	}
	st, err := batch.Run(t.Context(), batch.Options{Table: tbl, Input: inB, Prefix: "drop/", State: stateB, Summaries: sumB, SplitBytes: 64 << 10, Parallel: 2})
	if err != nil {
		t.Fatal(err)
	}
	if st.BadRecords != int64(2*len(bad)) {
		t.Fatalf("run: %+v; want %d bad records", st, 2*len(bad))
	}
	type deadLetter struct {
		File       string `json:"file"`
		Split      int    `json:"split"`
		Value      string `json:"value"`
		FileOffset *int64 `json:"file_offset"`
		FileLine   *int64 `json:"file_line"`
	}
	var dead []deadLetter
	err = stateB.Iter(t.Context(), "", func(o objstore.ObjectAttrs) error {
		if !strings.Contains(o.Key, "deadletters/") {
			return nil
		}
		rc, err := stateB.Get(context.Background(), o.Key)
		if err != nil {
			return err
		}
		defer rc.Close()
		data, err := io.ReadAll(rc)
		if err != nil {
			return err
		}
		for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
			var dl deadLetter
			if err := json.Unmarshal(line, &dl); err != nil {
				return fmt.Errorf("%s: %w", o.Key, err)
			}
			dead = append(dead, dl)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 2*len(bad) {
		t.Fatalf("%d dead letters, want %d", len(dead), 2*len(bad))
	}
	text := plain.Bytes() // both files hold these bytes, uncompressed
	splits := map[string]map[int]bool{}
	for _, dl := range dead {
		if _, ok := files[dl.File]; !ok || !bad[dl.Value] || dl.FileOffset == nil {
			t.Errorf("dead letter %+v: want a bad line of a file, with its offset", dl)
			continue
		}
		if splits[dl.File] == nil {
			splits[dl.File] = map[int]bool{}
		}
		splits[dl.File][dl.Split] = true
		off := *dl.FileOffset
		if off < 0 || off >= int64(len(text)) || off > 0 && text[off-1] != '\n' {
			t.Errorf("%s split %d: offset %d is not a line start of the file", dl.File, dl.Split, off)
			continue
		}
		got, _, _ := bytes.Cut(text[off:], []byte("\n"))
		if string(got) != dl.Value {
			t.Errorf("%s split %d: offset %d holds %q, want %q", dl.File, dl.Split, off, got, dl.Value)
		}
		wantLine := int64(bytes.Count(text[:off], []byte("\n"))) + 1
		switch {
		case dl.Split == 0 && (dl.FileLine == nil || *dl.FileLine != wantLine):
			t.Errorf("%s: %q has file_line %v, want %d", dl.File, dl.Value, dl.FileLine, wantLine)
		case dl.Split > 0 && dl.FileLine != nil:
			t.Errorf("%s split %d: file_line %d given where the split's first line number is not known", dl.File, dl.Split, *dl.FileLine)
		}
	}
	if len(splits["drop/big.jsonl"]) < 3 || len(splits["drop/big.jsonl.gz"]) != 1 {
		t.Errorf("dead letters in splits %v; want several of the plain file, the one of the gzip file", splits)
	}
}
