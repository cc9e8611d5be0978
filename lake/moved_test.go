package lake

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/objstore/objstoretest"
)

const movedTable, movedSource, movedPart = "t", "kafka:e", "0"

// movedLink is link seq of the test chain: a genesis at 0, then data links
// of 10 positions each.
func movedLink(seq int64, writer string) CommitRecord {
	if seq == 0 {
		return CommitRecord{Version: CommitRecordVersion, Table: movedTable, Source: movedSource, Partition: movedPart,
			Kind: LinkGenesis, First: PositionOf(0), Next: PositionOf(0), SourceID: "id", Writer: writer, Objects: []CommittedObject{}}
	}
	return CommitRecord{Version: CommitRecordVersion, Table: movedTable, Source: movedSource, Partition: movedPart, Seq: seq,
		Kind: LinkData, First: PositionOf((seq - 1) * 10), Next: PositionOf(seq * 10), SourceID: "id", Writer: writer,
		Objects: []CommittedObject{}}
}

// putFlat stores links [from, to) where a binary before link buckets did.
func putFlat(t *testing.T, b objstore.Bucket, from, to int64, writer string) {
	t.Helper()
	for seq := from; seq < to; seq++ {
		data, err := json.Marshal(movedLink(seq, writer))
		if err != nil {
			t.Fatal(err)
		}
		if err := b.PutIfAbsent(t.Context(), flatLinkKey(movedTable, movedSource, movedPart, seq), data); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLinkKeysSortInLinkOrderAcrossTheMove(t *testing.T) {
	// A chain flat up to its move, the marker at the move, bucketed after
	// it: one listing of the partition yields them in link order.
	for _, moved := range []int64{0, 1, 4094, 4095, 4096, 4097, 8191, 10000} {
		var keys []string
		var seqs []int64
		for seq := range moved + 3*LinkBucketSize {
			if seq < moved {
				keys = append(keys, flatLinkKey(movedTable, movedSource, movedPart, seq))
			} else {
				if seq == moved {
					keys = append(keys, MovedMarkerKey(movedTable, movedSource, movedPart, seq))
					seqs = append(seqs, seq)
				}
				keys = append(keys, LinkKey(movedTable, movedSource, movedPart, seq))
			}
			seqs = append(seqs, seq)
		}
		order := make([]int, len(keys))
		for i := range order {
			order[i] = i
		}
		rand.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		slices.SortFunc(order, func(a, b int) int { return strings.Compare(keys[a], keys[b]) })
		for i := 1; i < len(order); i++ {
			if seqs[order[i]] < seqs[order[i-1]] {
				t.Fatalf("moved at %d: %s sorts after %s", moved, keys[order[i]], keys[order[i-1]])
			}
		}
		prefix := PartitionCommitPrefix(movedTable, movedSource, movedPart)
		for i, k := range keys {
			name, _, ok := partitionEntry(prefix, k)
			if n, isLink := linkNumber(name); !ok || !isLink || n != seqs[i] {
				t.Fatalf("%s: link %d, %v %v; want link %d", k, n, ok, isLink, seqs[i])
			}
		}
	}
}

// A chain written flat by an older binary is read, resumed and continued in
// buckets; the marker fences older writers; readers starting anywhere on it
// (a checkpoint of either kind, a mark of either kind) read it in order.
func TestFlatChainContinuesInBuckets(t *testing.T) {
	ctx := t.Context()
	b := objstoretest.NewLocal(t)
	putFlat(t, b, 0, 10, "old")
	cp, _ := json.Marshal(Checkpoint{Version: 1, Table: movedTable, Source: movedSource, Partition: movedPart,
		End: End{Seq: 5, Next: PositionOf(40), SourceID: "id", Genesis: true}})
	objstoretest.Put(t, b, oldestFirstCheckpointKey(movedTable, movedSource, movedPart, 5), cp)

	w := NewCommitLog(b).WithCheckpointEvery(5)
	end, found, err := w.Resume(ctx, movedTable, movedSource, movedPart)
	if err != nil || !found || end.Seq != 10 || end.Next != PositionOf(90) {
		t.Fatalf("resume of the flat chain: %+v, %v, %v", end, found, err)
	}
	for seq := int64(10); seq <= 20; seq++ {
		if err := w.Commit(ctx, movedLink(seq, "new")); err != nil {
			t.Fatal(err)
		}
	}
	// The marker sits at link 10's flat key, the links from 10 on in their bucket.
	data := readKey(t, b, MovedMarkerKey(movedTable, movedSource, movedPart, 10))
	if !isMovedMarker(MovedMarkerKey(movedTable, movedSource, movedPart, 10), data) {
		t.Fatalf("no move marker at link 10: %s", data)
	}
	var asOld CommitRecord // what a binary before buckets decodes: a newer version, which it refuses
	if err := json.Unmarshal(data, &asOld); err != nil || asOld.Version <= CommitRecordVersion {
		t.Fatalf("an older binary reads the marker as version %d (%v), want one newer than %d", asOld.Version, err, CommitRecordVersion)
	}
	for seq := int64(11); seq <= 20; seq++ {
		if _, err := b.Attributes(ctx, flatLinkKey(movedTable, movedSource, movedPart, seq)); !objstore.IsNotExist(err) {
			t.Fatalf("link %d stored flat: %v", seq, err)
		}
	}
	// An older writer that wants link 10 flat loses to the marker.
	old, _ := json.Marshal(movedLink(10, "old"))
	if err := b.PutIfAbsent(ctx, flatLinkKey(movedTable, movedSource, movedPart, 10), old); !objstore.IsExists(err) {
		t.Fatalf("an older writer's link 10: %v, want ErrExists", err)
	}

	chain, err := NewCommitLog(b).Chain(ctx, movedTable, movedSource, movedPart)
	if err != nil || len(chain.Records) != 21 || len(chain.Anomalies) != 0 {
		t.Fatalf("chain: %d links, anomalies %+v, %v", len(chain.Records), chain.Anomalies, err)
	}
	for i, r := range chain.Records {
		if r.Seq != int64(i) || r.flat != (i < 10) {
			t.Fatalf("link %d: seq %d, flat %v", i, r.Seq, r.flat)
		}
	}
	// Resume from the newest checkpoint (at 20, newest first): four calls.
	h := objstoretest.NewHookBucket(b)
	end, found, err = NewCommitLog(h).Resume(ctx, movedTable, movedSource, movedPart)
	if err != nil || !found || end.Seq != 21 || end.Next != PositionOf(200) {
		t.Fatalf("resume: %+v, %v, %v", end, found, err)
	}
	if calls := h.Count("iter") + h.Count("get"); calls != 4 {
		t.Errorf("resume took %d calls, want 4", calls)
	}
	// From the older checkpoint only (the new ones gone): across the move.
	for _, seq := range []int64{15, 20} {
		if err := b.Delete(ctx, CheckpointKey(movedTable, movedSource, movedPart, seq)); err != nil {
			t.Fatal(err)
		}
	}
	r := NewCommitLog(b)
	if end, found, err := r.Resume(ctx, movedTable, movedSource, movedPart); err != nil || !found || end.Seq != 21 {
		t.Fatalf("resume from the older checkpoint: %+v, %v, %v", end, found, err)
	}
	// A fresh log knows the chain moved: its next link writes no marker.
	if err := r.Commit(ctx, movedLink(21, "new")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Attributes(ctx, flatLinkKey(movedTable, movedSource, movedPart, 21)); !objstore.IsNotExist(err) {
		t.Fatalf("a second marker at link 21: %v", err)
	}

	// Links since a mark on the flat part (as a cursor written before
	// buckets holds it) and since one on the bucketed part.
	for _, tc := range []struct {
		mark ChainMark
		want int64 // first link returned
	}{
		{ChainMark{Source: movedSource, Partition: movedPart, Seq: 4, Next: PositionOf(40), SourceID: "id", Genesis: true}, 5},
		{ChainMark{Source: movedSource, Partition: movedPart, Seq: 9, Next: PositionOf(90), SourceID: "id", Genesis: true}, 10},
		{ChainMark{Source: movedSource, Partition: movedPart, Seq: 12, Next: PositionOf(120), SourceID: "id", Genesis: true, Bucketed: true}, 13},
		{ChainMark{Source: movedSource, Partition: movedPart, Seq: 12, Next: PositionOf(120), SourceID: "id", Genesis: true}, 13},
	} {
		fresh, skipped, err := NewCommitLog(b).linksSince(ctx, movedTable, []ChainMark{tc.mark})
		if err != nil || len(fresh) != 1 || skipped != 0 {
			t.Fatalf("since %+v: %d chains, %d skipped, %v", tc.mark, len(fresh), skipped, err)
		}
		recs := fresh[0].Records
		if len(recs) != int(22-tc.want) || recs[0].Seq != tc.want || recs[len(recs)-1].Seq != 21 {
			t.Fatalf("since %+v: links %d to %d (%d), want %d to 21", tc.mark, recs[0].Seq, recs[len(recs)-1].Seq, len(recs), tc.want)
		}
		marks, _ := AdvanceMarks([]ChainMark{tc.mark}, fresh)
		if !marks[0].Bucketed || marks[0].Seq != 21 {
			t.Fatalf("mark after the links: %+v, want at a bucketed 21", marks[0])
		}
	}
}

// An older binary that wins a link flat before the first bucketed one is
// written makes that write a conflict, not a fork.
func TestOlderWriterWinsTheLinkFirst(t *testing.T) {
	ctx := t.Context()
	b := objstoretest.NewLocal(t)
	putFlat(t, b, 0, 10, "old")
	w := NewCommitLog(b)
	if end, _, err := w.Resume(ctx, movedTable, movedSource, movedPart); err != nil || end.Seq != 10 {
		t.Fatalf("resume: %+v, %v", end, err)
	}
	putFlat(t, b, 10, 11, "old") // the older binary, between our resume and commit
	err := w.Commit(ctx, movedLink(10, "new"))
	if !errors.Is(err, ErrCommitConflict) || !errors.Is(err, objstore.ErrExists) {
		t.Fatalf("commit: %v, want a conflict", err)
	}
	if _, err := b.Attributes(ctx, LinkKey(movedTable, movedSource, movedPart, 10)); !objstore.IsNotExist(err) {
		t.Fatalf("link 10 written in its bucket too: %v", err)
	}
	if end, _, err := w.Resume(ctx, movedTable, movedSource, movedPart); err != nil || end.Seq != 11 {
		t.Fatalf("resume after the conflict: %+v, %v", end, err)
	}
	if err := w.Commit(ctx, movedLink(11, "new")); err != nil {
		t.Fatal(err)
	}
	chain, err := NewCommitLog(b).Chain(ctx, movedTable, movedSource, movedPart)
	if err != nil || len(chain.Records) != 12 || len(chain.Anomalies) != 0 || chain.Records[10].Writer != "old" {
		t.Fatalf("chain: %d links, anomalies %+v, %v", len(chain.Records), chain.Anomalies, err)
	}
}

// Two copies of one link, flat and bucketed (a marker deleted by hand, an
// older binary writing past it): readers take neither and say so.
func TestForkedLinkIsRefused(t *testing.T) {
	ctx := t.Context()
	b := objstoretest.NewLocal(t)
	putFlat(t, b, 0, 11, "old")
	forked := movedLink(10, "new")
	forked.Next = PositionOf(95)
	data, _ := json.Marshal(forked)
	objstoretest.Put(t, b, LinkKey(movedTable, movedSource, movedPart, 10), data)
	after := movedLink(11, "new")
	after.First = PositionOf(95)
	data, _ = json.Marshal(after)
	objstoretest.Put(t, b, LinkKey(movedTable, movedSource, movedPart, 11), data)

	chain, err := NewCommitLog(b).Chain(ctx, movedTable, movedSource, movedPart)
	if err != nil || len(chain.Records) != 10 {
		t.Fatalf("chain: %d links, %v; want the 10 before the fork", len(chain.Records), err)
	}
	var keys []string
	for _, a := range chain.Anomalies {
		keys = append(keys, a.Key)
	}
	slices.Sort(keys)
	want := []string{flatLinkKey(movedTable, movedSource, movedPart, 10), LinkKey(movedTable, movedSource, movedPart, 10), LinkKey(movedTable, movedSource, movedPart, 11)}
	if !slices.Equal(keys, want) {
		t.Fatalf("anomalies %q, want %q", keys, want)
	}
	mark := ChainMark{Source: movedSource, Partition: movedPart, Seq: 9, Next: PositionOf(90), SourceID: "id", Genesis: true}
	fresh, err := NewCommitLog(b).LinksSince(ctx, movedTable, []ChainMark{mark})
	if err != nil || len(fresh) != 0 {
		t.Fatalf("links since 9: %+v, %v; want none (the fork stops reading)", fresh, err)
	}
}

func TestPartitionNamedLikeALinkBucketIsRefused(t *testing.T) {
	for _, p := range []string{"seq-00000000000000004095", "inbox/seq-00000000000000004095", "a/seq-00000000000000004095/b", "inbox/ckpts"} {
		if err := ValidateCommitNames("t", "s", p); !errors.Is(err, ErrInvalidCommit) {
			t.Errorf("partition %q: %v, want refused", p, err)
		}
	}
	for _, p := range []string{"seq-4095", "inbox/seq-00000000000000004095.json", "seq-0000000000000000409x", "inbox/ckpts.json"} {
		if err := ValidateCommitNames("t", "s", p); err != nil {
			t.Errorf("partition %q: %v, want accepted", p, err)
		}
	}
}

func readKey(t *testing.T, b objstore.Bucket, key string) []byte {
	t.Helper()
	data, err := NewCommitLog(b).readSmall(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// A writer that stopped between the move marker and its link leaves the
// marker alone: the chain ends before it, and the next writer goes on.
func TestMarkerWithoutItsLink(t *testing.T) {
	ctx := t.Context()
	b := objstoretest.NewLocal(t)
	putFlat(t, b, 0, 10, "old")
	crashed := NewCommitLog(b)
	if err := crashed.fenceFlatWriters(ctx, movedLink(10, "crashed")); err != nil {
		t.Fatal(err)
	}
	next := NewCommitLog(b)
	end, found, err := next.Resume(ctx, movedTable, movedSource, movedPart)
	if err != nil || !found || end.Seq != 10 || end.Next != PositionOf(90) {
		t.Fatalf("resume: %+v, %v, %v; want the end after link 9", end, found, err)
	}
	chain, err := next.Chain(ctx, movedTable, movedSource, movedPart)
	if err != nil || len(chain.Records) != 10 || len(chain.Anomalies) != 0 {
		t.Fatalf("chain: %d links, anomalies %+v, %v", len(chain.Records), chain.Anomalies, err)
	}
	if err := next.Commit(ctx, movedLink(10, "next")); err != nil {
		t.Fatal(err)
	}
	if chain, err := NewCommitLog(b).Chain(ctx, movedTable, movedSource, movedPart); err != nil || len(chain.Records) != 11 || chain.Records[10].Writer != "next" {
		t.Fatalf("chain after the commit: %d links, %v", len(chain.Records), err)
	}
	// A new chain's marker is at link 0; without its genesis the chain is empty.
	fresh := NewCommitLog(b)
	genesis := movedLink(0, "crashed")
	genesis.Partition = "1"
	if err := fresh.fenceFlatWriters(ctx, genesis); err != nil {
		t.Fatal(err)
	}
	if _, found, err := NewCommitLog(b).Resume(ctx, movedTable, movedSource, "1"); err != nil || found {
		t.Fatalf("resume of a chain with only its marker: found %v, %v", found, err)
	}
	end, err = NewCommitLog(b).Open(ctx, movedTable, movedSource, "1", "next", func(context.Context) (Genesis, error) {
		return Genesis{At: PositionOf(5), SourceID: "id"}, nil
	})
	if err != nil || end.Seq != 1 || end.Next != PositionOf(5) {
		t.Fatalf("open after the marker: %+v, %v", end, err)
	}
}
