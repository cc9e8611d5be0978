package lake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/sluicehq/sluice/objstore"
)

// Links moved from the partition's directory into buckets (LinkKey) in
// version 3 of the commit log's layout. Binaries before it store link n
// flat, at seq-<n>.json, and know nothing of buckets: left alone, an older
// binary still running during a rolling upgrade would see a chain's flat
// part only, and could win link n flat while this binary wins it in its
// bucket, both thinking they committed.
//
// So before its first bucketed link n of a chain, a writer creates the move
// marker at link n's flat key, conditionally, like a link. An older writer
// that wants link n (or, having read the marker, any link) loses: its
// create of the flat key fails, and its reader refuses the marker
// (version 3 is newer than it understands) instead of reading around it.
// A writer that finds a real link at the flat key lost the race to an
// older binary and resumes. No flat link can follow the marker, so a
// reader sees the chain flat up to the marker and bucketed from it.
//
// The upgrade rule this gives: binaries of this version may run beside
// older ones (a rolling upgrade); once a partition has its marker, older
// binaries stop with an error on it rather than fork it, so downgrading
// means restoring the lake as it was before the marker. Should two links
// of one number still be found (a marker deleted by hand), readers take
// neither and report both (buildChain).

// movedMarkerVersion is the layout version the marker announces; readers
// of record versions 1 and 2 only refuse it.
const movedMarkerVersion = 3

// linkMoved is the kind of the move marker.
const linkMoved = "moved"

// movedMarker is stored at the flat key of a chain's first bucketed link.
type movedMarker struct {
	Version   int       `json:"version"`
	Table     string    `json:"table"`
	Source    string    `json:"source"`
	Partition string    `json:"partition"`
	Seq       int64     `json:"seq"`
	Kind      string    `json:"kind"`
	Reason    string    `json:"reason"`
	Writer    string    `json:"writer"`
	WrittenAt time.Time `json:"written_at"`
}

// MovedMarkerKey is where the move marker of a chain whose first bucketed
// link is seq lives: that link's flat key.
func MovedMarkerKey(table, source, partition string, seq int64) string {
	return flatLinkKey(table, source, partition, seq)
}

// isMovedMarker says whether data, stored at key, is a move marker.
func isMovedMarker(key string, data []byte) bool {
	var m movedMarker
	if json.Unmarshal(data, &m) != nil || m.Version != movedMarkerVersion || m.Kind != linkMoved {
		return false
	}
	return ValidateCommitNames(m.Table, m.Source, m.Partition) == nil && flatLinkKey(m.Table, m.Source, m.Partition, m.Seq) == key
}

// fenceFlatWriters makes sure no older binary can win link rec.Seq (or any
// after it) flat, before rec is written in its bucket: a no-op once the
// chain is known to have moved.
func (l *CommitLog) fenceFlatWriters(ctx context.Context, rec CommitRecord) error {
	pid := partitionID{rec.Table, rec.Source, rec.Partition}
	l.mu.Lock()
	moved := l.moved[pid]
	l.mu.Unlock()
	if moved {
		return nil
	}
	key := flatLinkKey(rec.Table, rec.Source, rec.Partition, rec.Seq)
	data, err := json.Marshal(movedMarker{Version: movedMarkerVersion, Table: rec.Table, Source: rec.Source, Partition: rec.Partition,
		Seq: rec.Seq, Kind: linkMoved, Writer: rec.Writer, WrittenAt: l.now().UTC(),
		Reason: fmt.Sprintf("links from %d on are in directories of %d (%s/...); binaries that store them here must not write this chain",
			rec.Seq, LinkBucketSize, linkBucketName(rec.Seq))})
	if err != nil {
		return err
	}
	err = l.b.PutIfAbsent(ctx, key, data)
	if errors.Is(err, objstore.ErrExists) {
		var got []byte
		if got, err = l.readSmall(ctx, key); err != nil {
			return err
		}
		if !isMovedMarker(key, got) {
			return fmt.Errorf("%w: an older binary wrote link %d at %s first: %w", ErrCommitConflict, rec.Seq, key, objstore.ErrExists)
		}
	}
	if err != nil {
		return fmt.Errorf("write the move marker %s: %w", key, err)
	}
	l.markMoved(pid)
	return nil
}

// markMoved records that the partition's chain has its move marker (or a
// bucketed link, which is only written after it).
func (l *CommitLog) markMoved(pid partitionID) {
	l.mu.Lock()
	l.moved[pid] = true
	l.mu.Unlock()
}

// readSmall reads a commit-area object whole, up to maxRecordSize.
func (l *CommitLog) readSmall(ctx context.Context, key string) ([]byte, error) {
	rc, err := l.b.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(io.LimitReader(rc, maxRecordSize))
}

// isFlatKey says whether key, a commit key, sits directly in a partition's
// directory rather than in a link bucket.
func isFlatKey(key string) bool {
	dir := key[:max(strings.LastIndex(key, "/"), 0)]
	return !isLinkBucketName(dir[strings.LastIndex(dir, "/")+1:])
}
