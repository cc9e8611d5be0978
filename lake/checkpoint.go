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
// chain's end beside the links, under ckpt-<next link>.json. Resume reads
// the newest checkpoint, lists only the links after it (StartAfter) and
// reads the last of them: a handful of calls, not one per link ever
// written. A checkpoint is a shortcut, never the truth: it is written after
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

// newestFirstPrefix starts the names of checkpoints written since link
// buckets: ckpt-r<MaxInt64-seq>.json, so that the newest is listed first
// and finding it costs one LIST page however many there are (one a
// thousand links: a thousand a year per partition). They sort after the
// older, oldest-first names ckpt-<seq>.json, all of which are older than
// any of them.
const newestFirstPrefix = checkpointPrefix + "r"

// CheckpointKey is where the checkpoint of the chain's end at link seq lives.
func CheckpointKey(table, source, partition string, seq int64) string {
	return fmt.Sprintf("%s%s%020d.json", PartitionCommitPrefix(table, source, partition), newestFirstPrefix, math.MaxInt64-seq)
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
	newest, from, bucketed, ok, err := l.newestCheckpoint(ctx, table, source, partition)
	if err != nil || !ok {
		return End{}, false, err
	}
	firstKey, lastSeq, lastKey, err := l.lastLink(ctx, table, source, partition, from, bucketed)
	if err != nil {
		return End{}, false, err
	}
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
		if lastSeq == 0 {
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

// newestCheckpoint finds the partition's newest checkpoint (newest is ""
// when there is none) and the link the chain is read from after it (0
// without one); bucketed says the checkpoint was written since link
// buckets, so link from-1 is in its bucket. ok is false when the
// checkpoint does not match its key: the caller reads the chain instead.
func (l *CommitLog) newestCheckpoint(ctx context.Context, table, source, partition string) (newest string, from int64, bucketed, ok bool, err error) {
	prefix := PartitionCommitPrefix(table, source, partition)
	err = l.b.Iter(ctx, prefix+checkpointPrefix, func(a objstore.ObjectAttrs) error {
		name := strings.TrimPrefix(a.Key, prefix)
		if strings.Contains(name, "/") {
			return nil // another partition's, nested under this one
		}
		newest = a.Key
		if strings.HasPrefix(name, newestFirstPrefix) {
			bucketed = true
			return errStopWalk // newer than every older-style one, and listed newest first
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStopWalk) {
		return "", 0, false, false, err
	}
	// A chain younger than its first checkpoint starts from link 0, which
	// must then be its genesis (a chain continuing version-1 records has
	// its genesis later, and is read whole).
	if newest == "" {
		return "", 0, false, true, nil
	}
	var cp Checkpoint
	if found, err := l.readJSON(ctx, newest, &cp); err != nil || !found {
		return "", 0, false, false, err
	}
	want := oldestFirstCheckpointKey(table, source, partition, cp.End.Seq)
	if bucketed {
		want = CheckpointKey(table, source, partition, cp.End.Seq)
	}
	if cp.Table != table || cp.Source != source || cp.Partition != partition || !cp.End.Genesis || cp.End.Seq < 1 || want != newest {
		l.logger.Warn("checkpoint does not match its key; reading the chain", "key", newest)
		return "", 0, false, false, nil
	}
	return newest, cp.End.Seq, bucketed, true, nil
}

// lastLink lists the partition's links by name from link from on, dense
// (a missing link ends the chain), and returns the first one's key and the
// last one's number and key ("" when there is none from from on). The
// listing starts after link from-1, in its bucket when bucketed, else at
// its flat name, which sorts before every link after it in either layout.
// A link's flat name followed by its bucketed one is the move marker and
// the link: the bucketed one is taken (were the flat one a link, the chain
// forked; Chain reports it).
func (l *CommitLog) lastLink(ctx context.Context, table, source, partition string, from int64, bucketed bool) (firstKey string, lastSeq int64, lastKey string, err error) {
	prefix := PartitionCommitPrefix(table, source, partition)
	lastSeq, startAfter := from-1, ""
	if from > 0 {
		startAfter = flatLinkKey(table, source, partition, from-1)
		if bucketed {
			startAfter = LinkKey(table, source, partition, from-1)
		}
	}
	err = objstore.IterAfter(ctx, l.b, prefix+linkPrefix, startAfter, func(a objstore.ObjectAttrs) error {
		name, inBucket, ok := partitionEntry(prefix, a.Key)
		n, isLink := linkNumber(name)
		switch {
		case !ok || !isLink || n < from:
			return nil // not a link (garbage is reported by Chain), or before from in its bucket
		case n == lastSeq && inBucket && lastKey != "" && isFlatKey(lastKey):
		case n != lastSeq+1:
			return errStopWalk // a missing link ends the chain
		}
		if n == from && (firstKey == "" || inBucket) {
			firstKey = a.Key
		}
		lastSeq, lastKey = n, a.Key
		return nil
	})
	if err != nil && !errors.Is(err, errStopWalk) {
		return "", 0, "", err
	}
	return firstKey, lastSeq, lastKey, nil
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
