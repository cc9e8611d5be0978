package inspect

import (
	"encoding/json"
	"testing"
)

// A dead letter read from a file says where in the file; one from a stream
// says its offset (or, past int64, its position) only.
func TestDeadLetterPlace(t *testing.T) {
	for _, tc := range []struct{ line, want string }{
		{`{"source":"kafka","partition":"3","position":"17","offset":17}`, "17"},
		{`{"source":"kinesis","partition":"shardId-1","position":"2417851639229258349412482976"}`, "2417851639229258349412482976"},
		{`{"source":"inbox","partition":"in/a.jsonl@1#2","position":"4","offset":4,"file":"in/a.jsonl","file_offset":67108991}`, "4 (file byte 67108991)"},
		{`{"source":"inbox","partition":"in/a.jsonl@1#0","position":"4","offset":4,"file":"in/a.jsonl","file_offset":391,"file_line":5}`, "4 (file byte 391, line 5)"},
		{`{"source":"inbox","partition":"in/b.parquet@1#1","position":"9","offset":9,"file":"in/b.parquet","file_row":1033}`, "9 (file row 1033)"},
	} {
		var dl map[string]any
		if err := json.Unmarshal([]byte(tc.line), &dl); err != nil {
			t.Fatal(err)
		}
		if got := deadLetterPlace(dl); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.line, got, tc.want)
		}
	}
}
