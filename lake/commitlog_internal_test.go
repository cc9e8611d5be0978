package lake

import (
	"slices"
	"testing"
)

func TestBuildChain(t *testing.T) {
	rec := func(first, next int64) CommitRecord {
		return CommitRecord{Table: "t", Source: "s", Partition: "0", FirstOffset: first, NextOffset: next}
	}
	for _, tc := range []struct {
		name      string
		recs      []CommitRecord
		wantChain []int64 // first offsets on the chain
		wantOff   int
	}{
		{"empty", nil, nil, 0},
		{"one", []CommitRecord{rec(5, 9)}, []int64{5}, 0},
		{"contiguous", []CommitRecord{rec(0, 3), rec(3, 7), rec(7, 8)}, []int64{0, 3, 7}, 0},
		{"overlap is skipped, chain continues", []CommitRecord{rec(0, 10), rec(5, 12), rec(10, 20)}, []int64{0, 10}, 1},
		{"overlap starting inside the last link", []CommitRecord{rec(0, 10), rec(10, 20), rec(15, 30)}, []int64{0, 10}, 1},
		{"gap ends the chain", []CommitRecord{rec(0, 10), rec(11, 20), rec(20, 30)}, []int64{0}, 2},
		{"lowest record starts the chain", []CommitRecord{rec(100, 110), rec(110, 120)}, []int64{100, 110}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			chain, off := buildChain(tc.recs)
			var got []int64
			for _, r := range chain {
				got = append(got, r.FirstOffset)
			}
			if !slices.Equal(got, tc.wantChain) || len(off) != tc.wantOff {
				t.Errorf("chain %v with %d off-chain (%+v), want %v with %d", got, len(off), off, tc.wantChain, tc.wantOff)
			}
		})
	}
}

func TestParseRecord(t *testing.T) {
	good := `{"version":1,"table":"t","source":"s","partition":"0","first_offset":5,"next_offset":9,"records":0,"objects":[]}`
	key := CommitKey("t", "s", "0", 5)
	for _, tc := range []struct {
		name, key, data string
		valid           bool
	}{
		{"valid", key, good, true},
		{"unknown fields are fine", key, `{"version":1,"table":"t","source":"s","partition":"0","first_offset":5,"next_offset":9,"future":true}`, true},
		{"bad name", CommitPrefix("t") + "s/0/notes.json", good, false},
		{"short name", CommitPrefix("t") + "s/0/5.json", good, false},
		{"not JSON", key, "{", false},
		{"belongs elsewhere", CommitKey("t", "s", "0", 6), good, false},
		{"empty range", key, `{"version":1,"table":"t","source":"s","partition":"0","first_offset":5,"next_offset":5}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, bad := parseRecord(tc.key, []byte(tc.data))
			if (bad == "") != tc.valid {
				t.Errorf("parseRecord: %q, want valid %v", bad, tc.valid)
			}
		})
	}
}
