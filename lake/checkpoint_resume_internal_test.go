package lake

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/objstore/objstoretest"
)

// A checkpoint's key sorts before those of every older checkpoint of its
// partition, and stays in the checkpoint directory: a resume lists that
// directory and takes the first key as the newest. Keys that sorted oldest
// first would still resume correctly, from the oldest checkpoint, reading
// every link written since: this is the test that notices.
func TestCheckpointKeysSortNewestFirst(t *testing.T) {
	dir := PartitionCommitPrefix(movedTable, movedSource, movedPart) + checkpointDir + "/"
	prev := ""
	for _, seq := range []int64{1, 2, 9, 10, 99, 100, LinkBucketSize - 1, LinkBucketSize, 1 << 20, 1 << 40} {
		key := CheckpointKey(movedTable, movedSource, movedPart, seq)
		if len(key) <= len(dir) || key[:len(dir)] != dir {
			t.Fatalf("checkpoint %d at %s, outside %s", seq, key, dir)
		}
		if prev != "" && key >= prev {
			t.Fatalf("checkpoint %d at %s sorts after the older %s", seq, key, prev)
		}
		prev = key
	}
}

// callCounter counts a local store's reads: a resume's cost is its calls.
type callCounter struct {
	*objstore.Local
	gets, lists int
}

func (c *callCounter) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	c.gets++
	return c.Local.Get(ctx, key)
}

func (c *callCounter) Iter(ctx context.Context, prefix string, fn func(objstore.ObjectAttrs) error) error {
	c.lists++
	return c.Local.Iter(ctx, prefix, fn)
}

func (c *callCounter) IterAfter(ctx context.Context, prefix, startAfter string, fn func(objstore.ObjectAttrs) error) error {
	c.lists++
	return c.Local.IterAfter(ctx, prefix, startAfter, fn)
}

// A chain written flat by a binary before link buckets, whose older kind of
// checkpoint sits at its end (no link after it): the resume reads the
// checkpoint and the link it names, not the chain.
func TestResumeFlatChainEndingAtItsCheckpoint(t *testing.T) {
	ctx := t.Context()
	b := &callCounter{Local: objstoretest.NewLocal(t)}
	putFlat(t, b, 0, 40, "old")
	for _, seq := range []int64{20, 40} {
		cp, _ := json.Marshal(Checkpoint{Version: 1, Table: movedTable, Source: movedSource, Partition: movedPart,
			End: End{Seq: seq, Next: PositionOf((seq - 1) * 10), SourceID: "id", Genesis: true}})
		objstoretest.Put(t, b, oldestFirstCheckpointKey(movedTable, movedSource, movedPart, seq), cp)
	}
	b.gets, b.lists = 0, 0
	end, found, err := NewCommitLog(b).Resume(ctx, movedTable, movedSource, movedPart)
	if err != nil || !found || end.Seq != 40 || end.Next != PositionOf(390) || !end.Genesis {
		t.Fatalf("resume: %+v, %v, %v; want the end after link 39", end, found, err)
	}
	if b.gets > 2 || b.gets+b.lists > 5 {
		t.Errorf("resume read %d objects in %d listings; want the checkpoint and link 39 (the chain has 40 links)", b.gets, b.lists)
	}
}

// failingLinkListings fails every listing of a link directory, as a store
// that times out or answers 500 would.
type failingLinkListings struct {
	*objstore.Local
}

var errListingFailed = errors.New("listing failed (injected)")

func (f failingLinkListings) IterAfter(ctx context.Context, prefix, startAfter string, fn func(objstore.ObjectAttrs) error) error {
	if strings.Contains(prefix, "/"+linkPrefix) {
		return errListingFailed
	}
	return f.Local.IterAfter(ctx, prefix, startAfter, fn)
}

// A store that fails the listing of the links after the newest checkpoint
// must make the resume fail (or find the true end some other way), never
// end the chain at the checkpoint: a writer resumed there would take links
// that exist for its own.
func TestResumeWhenTheLinkListingFails(t *testing.T) {
	ctx := t.Context()
	local := objstoretest.NewLocal(t)
	w := NewCommitLog(local).WithCheckpointEvery(5)
	for seq := range int64(13) {
		if err := w.Commit(ctx, movedLink(seq, "w")); err != nil {
			t.Fatal(err)
		}
	}
	end, found, err := NewCommitLog(failingLinkListings{local}).Resume(ctx, movedTable, movedSource, movedPart)
	if err == nil && (!found || end.Seq != 13) {
		t.Fatalf("resume with failing link listings: %+v, found %v, no error; want the end after link 12 or an error", end, found)
	}
	if err != nil && !errors.Is(err, errListingFailed) {
		t.Fatalf("resume failed with %v, not the store's error", err)
	}
}
