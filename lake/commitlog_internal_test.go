package lake

import (
	"slices"
	"testing"
)

func TestBuildChain(t *testing.T) {
	rec := func(first, next int64) CommitRecord {
		return CommitRecord{Version: 1, Table: "t", Source: "s", Partition: "0", FirstOffset: first, NextOffset: next}
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

func TestBuildChainVersion2(t *testing.T) {
	link := func(seq int64, kind string, first, next int64) CommitRecord {
		return CommitRecord{Version: 2, Table: "t", Source: "s", Partition: "0", Seq: seq, Kind: kind, First: PositionOf(first), Next: PositionOf(next)}
	}
	v1 := func(first, next int64) CommitRecord {
		return CommitRecord{Version: 1, Table: "t", Source: "s", Partition: "0", FirstOffset: first, NextOffset: next}
	}
	for _, tc := range []struct {
		name    string
		recs    []CommitRecord
		want    []int64 // link numbers on the chain
		wantOff int
	}{
		{"genesis only", []CommitRecord{link(0, LinkGenesis, 5, 5)}, []int64{0}, 0},
		{"dense", []CommitRecord{link(2, LinkData, 7, 9), link(0, LinkGenesis, 5, 5), link(1, LinkData, 5, 7)}, []int64{0, 1, 2}, 0},
		{"no genesis", []CommitRecord{link(0, LinkData, 5, 7)}, nil, 1},
		{"missing number ends the chain", []CommitRecord{link(0, LinkGenesis, 5, 5), link(1, LinkData, 5, 7), link(3, LinkData, 9, 11)}, []int64{0, 1}, 1},
		{"link not at the end", []CommitRecord{link(0, LinkGenesis, 5, 5), link(1, LinkData, 6, 7), link(2, LinkData, 7, 8)}, []int64{0}, 2},
		{"gap then data", []CommitRecord{link(0, LinkGenesis, 5, 5), link(1, LinkGap, 5, 50), link(2, LinkData, 50, 51)}, []int64{0, 1, 2}, 0},
		{"reset starts anywhere", []CommitRecord{link(0, LinkGenesis, 5, 5), link(1, LinkData, 5, 9), link(2, LinkReset, 0, 0), link(3, LinkData, 0, 4)}, []int64{0, 1, 2, 3}, 0},
		{"second genesis", []CommitRecord{link(0, LinkGenesis, 5, 5), link(1, LinkGenesis, 5, 5)}, []int64{0}, 1},
		{"continues version 1", []CommitRecord{v1(0, 3), v1(3, 7), link(2, LinkGenesis, 7, 7), link(3, LinkData, 7, 9)}, []int64{0, 1, 2, 3}, 0},
		{"version 1 after the genesis", []CommitRecord{v1(0, 3), v1(3, 7), v1(7, 9), link(2, LinkGenesis, 7, 7)}, []int64{0, 1, 2}, 1},
		{"genesis off the version-1 end", []CommitRecord{v1(0, 3), link(1, LinkGenesis, 4, 4)}, []int64{0}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			chain, off := buildChain(tc.recs)
			var got []int64
			for _, r := range chain {
				got = append(got, r.Seq)
			}
			if !slices.Equal(got, tc.want) || len(off) != tc.wantOff {
				t.Errorf("chain %v with %d off-chain (%+v), want %v with %d", got, len(off), off, tc.want, tc.wantOff)
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
		{"version 2", LinkKey("t", "s", "0", 0), `{"version":2,"table":"t","source":"s","partition":"0","seq":0,"kind":"genesis","first":"5","next":"5","objects":[]}`, true},
		{"version 2 at a version-1 key", CommitKey("t", "s", "0", 0), `{"version":2,"table":"t","source":"s","partition":"0","seq":0,"kind":"genesis","first":"5","next":"5","objects":[]}`, false},
		{"version 2 at another link", LinkKey("t", "s", "0", 1), `{"version":2,"table":"t","source":"s","partition":"0","seq":0,"kind":"genesis","first":"5","next":"5","objects":[]}`, false},
		{"position as a number", LinkKey("t", "s", "0", 0), `{"version":2,"table":"t","source":"s","partition":"0","seq":0,"kind":"genesis","first":5,"next":5,"objects":[]}`, false},
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
