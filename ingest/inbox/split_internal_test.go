package inbox

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"
)

// Every line belongs to exactly one split, whatever the split size and
// wherever a boundary falls (on a newline, just after one, inside a line,
// inside a CRLF), and the lines come out whole and in order.
func TestSplitsCoverEveryLineOnce(t *testing.T) {
	texts := map[string]string{
		"lf":          "a\nbb\n\nccc\nd\nee\n",
		"no trailing": "one\ntwo\nthree",
		"crlf":        "x1\r\ny22\r\n\r\nz333\r\n",
		"long line":   "short\n" + string(bytes.Repeat([]byte("L"), 50)) + "\nend\n",
	}
	for name, text := range texts {
		want := bytes.Split(bytes.TrimSuffix([]byte(text), []byte("\n")), []byte("\n"))
		for i := range want {
			want[i] = bytes.TrimRight(want[i], "\r")
		}
		for size := int64(1); size <= int64(len(text))+1; size++ {
			t.Run(fmt.Sprintf("%s/%d", name, size), func(t *testing.T) {
				var got [][]byte
				for _, sp := range PlanSplits("jsonl", CompNone, int64(len(text)), size) {
					start := sp.Start
					if start > 0 {
						start--
					}
					lr, err := newLineReader(bytes.NewReader([]byte(text)[start:]), sp.Start, sp.End, 1<<20)
					if err != nil {
						t.Fatal(err)
					}
					for {
						line, _, err := lr.next()
						if errors.Is(err, io.EOF) {
							break
						}
						if err != nil {
							t.Fatal(err)
						}
						got = append(got, bytes.Clone(line))
					}
				}
				if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", want) {
					t.Errorf("splits of %d bytes: got %q, want %q", size, got, want)
				}
			})
		}
	}
}
