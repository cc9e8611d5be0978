package lake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/sluicehq/sluice/objstore"
)

// Checkpoints keep resuming a partition cheap however long its chain grows.
// Every CheckpointEvery links the writer that committed the link stores the
// chain's end beside the links, under ckpts/ (see CheckpointKey). Resume
// reads the newest checkpoint, lists only the links after it (StartAfter,
// in their directories) and reads the last of them: a handful of calls,
// not one per link ever written, and on a store backed by a file system
// no directory larger than LinkBucketSize links. A checkpoint is a shortcut, never the truth: it is written after
// the link it describes, and one that is missing, unreadable or wrong only
// makes Resume fall back to reading the chain (and Commit's conditional
// create still refuses a link that is not the next).

// DefaultCheckpointEvery is how many links apart checkpoints are.
const DefaultCheckpointEvery = 1000

const checkpointPrefix = "ckpt-"

// Checkpoint is the end of a partition's chain after link End.Seq-1.
type Checkpoint struct {
	Version   int       `json:"version"`
	Table     string    `json:"table"`
	Source    string    `json:"source"`
	Partition string    `json:"partition"`
	End       End       `json:"end"`
	Writer    string    `json:"writer"`
	WrittenAt time.Time `json:"written_at"`
}

// checkpointDir holds the checkpoints written since link buckets, named
// ckpt-r<MaxInt64-seq>.json so that the newest is listed first: finding it
// costs one LIST page however many there are (one a thousand links, a
// thousand a year per partition), and on a store backed by a file system
// reads this directory, not the partition's. All of them are newer than
// every checkpoint of the older kind, ckpt-<seq>.json in the partition's
// directory. No partition may have a segment of this name
// (ValidateCommitNames), so the key's partition is never in doubt.
const checkpointDir = "ckpts"

// CheckpointKey is where the checkpoint of the chain's end at link seq lives.
func CheckpointKey(table, source, partition string, seq int64) string {
	return fmt.Sprintf("%s%s/%sr%020d.json", PartitionCommitPrefix(table, source, partition), checkpointDir, checkpointPrefix, math.MaxInt64-seq)
}

// oldestFirstCheckpointKey is where binaries before link buckets stored the
// checkpoint at link seq; they are still read.
func oldestFirstCheckpointKey(table, source, partition string, seq int64) string {
	return fmt.Sprintf("%s%s%020d.json", PartitionCommitPrefix(table, source, partition), checkpointPrefix, seq)
}

func isCheckpointKey(key string) bool {
	return strings.HasPrefix(key[strings.LastIndex(key, "/")+1:], checkpointPrefix)
}

// WithCheckpointEvery sets how many links apart checkpoints are (0: none)
// and returns l.
func (l *CommitLog) WithCheckpointEvery(n int64) *CommitLog {
	l.checkpointEvery = n
	return l
}

// writeCheckpoint stores end; a failure costs only speed, so it is logged.
func (l *CommitLog) writeCheckpoint(ctx context.Context, table, source, partition, writer string, end End) {
	data, err := json.Marshal(Checkpoint{Version: 1, Table: table, Source: source, Partition: partition,
		End: end, Writer: writer, WrittenAt: l.now().UTC()})
	if err == nil {
		err = l.b.PutIfAbsent(ctx, CheckpointKey(table, source, partition, end.Seq), data)
	}
	l.ages.written(partitionID{table, source, partition}, end.Seq, err)
	if err != nil && !errors.Is(err, objstore.ErrExists) {
		l.logger.Warn("checkpoint not written; resuming the partition reads more links until the next one",
			"table", table, "source", source, "partition", partition, "link", end.Seq, "err", err)
	}
}

// tail finds the chain's end from the newest checkpoint: ok is false when
// there is none usable, and the caller reads the chain instead.
func (l *CommitLog) tail(ctx context.Context, table, source, partition string) (End, bool, error) {
	prefix := PartitionCommitPrefix(table, source, partition)
	links := &linkWalk{prefix: prefix, lastSeq: -1}
	newest, bucketed, err := l.newestCheckpoint(ctx, prefix, links)
	if err != nil {
		return End{}, false, err
	}
	var from int64
	if newest != "" {
		var ok bool
		from, ok, err = l.readCheckpoint(ctx, table, source, partition, newest, bucketed)
		if err != nil || !ok {
			return End{}, false, err
		}
		links = &linkWalk{prefix: prefix, from: from, lastSeq: from - 1}
		if err := l.walkLinks(ctx, table, source, partition, links, bucketed); err != nil {
			return End{}, false, err
		}
	}
	firstKey, lastKey := links.firstKey, links.lastKey
	pid := partitionID{table, source, partition}
	if newest == "" {
		if lastKey == "" {
			return End{}, false, nil // no link 0: empty, or version-1 links first
		}
		var first CommitRecord
		found, err := l.readJSON(ctx, firstKey, &first)
		if err != nil || !found {
			return End{}, false, err
		}
		if validateRecord(first) != nil || first.Version != CommitRecordVersion || first.Kind != LinkGenesis || first.Seq != 0 ||
			!linkAt(first, firstKey) {
			return End{}, false, nil // let Chain sort it out and report it
		}
		if links.lastSeq == 0 {
			if !isFlatKey(firstKey) {
				l.markMoved(pid)
			}
			l.ages.note(pid, 1, 0)
			return End{Seq: 1, Next: first.Next, SourceID: first.SourceID, Genesis: true}, true, nil
		}
	}
	if lastKey == "" {
		// Nothing after the checkpoint: it must describe a link that
		// exists, in a bucket if the checkpoint was written since them.
		lastKey = flatLinkKey(table, source, partition, from-1)
		if bucketed {
			lastKey = LinkKey(table, source, partition, from-1)
		}
	}
	var last CommitRecord
	found, err := l.readJSON(ctx, lastKey, &last)
	if err != nil || !found {
		return End{}, false, err
	}
	if validateRecord(last) != nil || last.Version != CommitRecordVersion || !linkAt(last, lastKey) {
		return End{}, false, nil // let Chain sort it out and report it
	}
	if !isFlatKey(lastKey) {
		l.markMoved(pid) // a bucketed link is only written after the marker
	}
	l.ages.note(pid, last.Seq+1, from)
	return End{Seq: last.Seq + 1, Next: last.Next, SourceID: last.SourceID, Genesis: true, Ended: last.Kind == LinkEnd}, true, nil
}

// newestCheckpoint finds the key of the partition's newest checkpoint (""
// when there is none); bucketed says it was written since link buckets,
// so the link before it is in its bucket. The newest-first directory is
// listed first; only without a checkpoint there, the partition's
// directory, in one listing from the older kind of checkpoint on: when
// there is none of those either, the chain is younger than its first
// checkpoint and the same listing walks its links from link 0 into young.
func (l *CommitLog) newestCheckpoint(ctx context.Context, prefix string, young *linkWalk) (newest string, bucketed bool, err error) {
	err = l.b.Iter(ctx, prefix+checkpointDir+"/", func(a objstore.ObjectAttrs) error {
		if isCheckpointKey(a.Key) {
			newest, bucketed = a.Key, true
			return errStopWalk // listed newest first
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStopWalk) {
		return "", false, err
	}
	if newest != "" {
		return newest, true, nil
	}
	// Every name of the partition's own from "ckpt" on: older checkpoints
	// (oldest first), the newest-first directory, links (flat or bucketed).
	err = objstore.IterAfter(ctx, l.b, prefix, prefix+"ckpt", func(a objstore.ObjectAttrs) error {
		name, inBucket, ok := partitionEntry(prefix, a.Key)
		switch {
		case !ok:
			return nil // a nested partition's
		case isCheckpointKey(a.Key):
			if !inBucket && !strings.Contains(strings.TrimPrefix(a.Key, prefix), "/") {
				newest = a.Key
			}
			return nil
		case newest != "":
			return errStopWalk // past the checkpoints: the links are listed from the newest one
		case strings.HasPrefix(name, linkPrefix):
			return young.visit(a)
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStopWalk) {
		return "", false, err
	}
	return newest, false, nil
}

// readCheckpoint reads the checkpoint at key and returns the link the chain
// is read from after it. ok is false when the checkpoint does not match its
// key: the caller reads the chain instead.
func (l *CommitLog) readCheckpoint(ctx context.Context, table, source, partition, key string, bucketed bool) (from int64, ok bool, err error) {
	var cp Checkpoint
	if found, err := l.readJSON(ctx, key, &cp); err != nil || !found {
		return 0, false, err
	}
	want := oldestFirstCheckpointKey(table, source, partition, cp.End.Seq)
	if bucketed {
		want = CheckpointKey(table, source, partition, cp.End.Seq)
	}
	if cp.Table != table || cp.Source != source || cp.Partition != partition || !cp.End.Genesis || cp.End.Seq < 1 || want != key {
		l.logger.Warn("checkpoint does not match its key; reading the chain", "key", key)
		return 0, false, nil
	}
	return cp.End.Seq, true, nil
}

// linkWalk follows a partition's links by name from link from on, dense (a
// missing link ends the chain): the first one's key, the last one's number
// and key ("" when there is none from from on). A link's flat name followed
// by its bucketed one is the move marker and the link, and the bucketed one
// is taken (were the flat one a link, the chain forked; Chain reports it).
type linkWalk struct {
	prefix            string
	from              int64
	firstKey, lastKey string
	lastSeq           int64
}

func (w *linkWalk) visit(a objstore.ObjectAttrs) error {
	name, inBucket, ok := partitionEntry(w.prefix, a.Key)
	n, isLink := linkNumber(name)
	switch {
	case !ok || !isLink || n < w.from:
		return nil // not a link (garbage is reported by Chain), or before from in its bucket
	case n == w.lastSeq && inBucket && w.lastKey != "" && isFlatKey(w.lastKey):
	case n != w.lastSeq+1:
		return errStopWalk // a missing link ends the chain
	}
	if n == w.from && (w.firstKey == "" || inBucket) {
		w.firstKey = a.Key
	}
	w.lastSeq, w.lastKey = n, a.Key
	return nil
}

// walkLinks lists the links after link w.from-1 into w. When bucketed (link
// from-1 is in its bucket, so every later link is too) it goes bucket by
// bucket, from link from-1's, on to the next only while the links fill
// it: it never reads the partition's directory, which, for a chain written
// flat by an older binary, may hold its whole past. Otherwise it lists the
// partition's directory after link from-1's flat name, which sorts before
// every link after it in either layout.
func (l *CommitLog) walkLinks(ctx context.Context, table, source, partition string, w *linkWalk, bucketed bool) error {
	var err error
	if !bucketed {
		err = objstore.IterAfter(ctx, l.b, w.prefix+linkPrefix, flatLinkKey(table, source, partition, w.from-1), w.visit)
	} else {
		startAfter := LinkKey(table, source, partition, w.from-1)
		for bucket := w.from - 1; ; bucket = w.lastSeq + 1 {
			before := w.lastSeq
			err = objstore.IterAfter(ctx, l.b, w.prefix+linkBucketName(bucket)+"/", startAfter, w.visit)
			if err != nil || w.lastSeq%LinkBucketSize != LinkBucketSize-1 || (w.lastSeq == before && bucket != w.from-1) {
				break // the chain ends in this bucket
			}
		}
	}
	if err != nil && !errors.Is(err, errStopWalk) {
		return err
	}
	return nil
}

// linkAt says whether rec, a version-2 record, belongs at key: its bucketed
// key, or its flat one (written before buckets).
func linkAt(rec CommitRecord, key string) bool {
	return key == LinkKey(rec.Table, rec.Source, rec.Partition, rec.Seq) ||
		key == flatLinkKey(rec.Table, rec.Source, rec.Partition, rec.Seq)
}

var errStopWalk = errors.New("stop")

// readJSON reads a small JSON object; found is false if it is gone.
func (l *CommitLog) readJSON(ctx context.Context, key string, v any) (found bool, err error) {
	rc, err := l.b.Get(ctx, key)
	if objstore.IsNotExist(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read %s: %w", key, err)
	}
	defer rc.Close()
	if err := json.NewDecoder(io.LimitReader(rc, maxRecordSize)).Decode(v); err != nil {
		return false, nil // unreadable: the caller falls back
	}
	return true, nil
}
