package lake

import (
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"strconv"
	"strings"
	"time"
)

// Object kinds named by a commit record.
const (
	KindRaw        = "raw"        // Parquet rows of the table
	KindDeadLetter = "deadletter" // JSON lines of records that did not fit, with reasons
)

// CommittedObject is one object a commit record vouches for.
type CommittedObject struct {
	Key  string `json:"key"`
	Kind string `json:"kind"`
	Rows int64  `json:"rows"`
	Size int64  `json:"size"` // bytes
	// Checksum of the object's bytes, "crc32c:" and 8 hex digits; readers
	// refuse an object whose bytes do not match. Empty in version-1 records.
	Checksum string `json:"checksum,omitempty"`
	// Event-time range of the rows (raw objects only), microseconds since the
	// epoch, both inclusive.
	MinEventTimeMicros int64 `json:"min_event_time_us,omitempty"`
	MaxEventTimeMicros int64 `json:"max_event_time_us,omitempty"`
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Checksum returns the checksum CommittedObject.Checksum holds for data.
func Checksum(data []byte) string {
	return fmt.Sprintf("crc32c:%08x", crc32.Checksum(data, castagnoli))
}

// ErrObjectMismatch is wrapped by CheckObject's error: the bytes read are not
// the object the record vouches for (truncated, replaced, corrupted).
var ErrObjectMismatch = errors.New("object does not match its record")

// CheckObject verifies data, the whole content read under o.Key, against
// the size and checksum its record holds.
func CheckObject(o CommittedObject, data []byte) error {
	if int64(len(data)) != o.Size {
		return fmt.Errorf("%w: %s is %d bytes, its record says %d", ErrObjectMismatch, o.Key, len(data), o.Size)
	}
	if o.Checksum != "" {
		if got := Checksum(data); got != o.Checksum {
			return fmt.Errorf("%w: %s has checksum %s, its record says %s", ErrObjectMismatch, o.Key, got, o.Checksum)
		}
	}
	return nil
}

// Link kinds of a version-2 chain.
const (
	// LinkGenesis is link 0 of a chain (or the first after a version-1
	// chain): it pins, once, where the partition starts (start_offset
	// earliest, latest or a time resolved to a position) and which
	// incarnation of the source it belongs to. First == Next.
	LinkGenesis = "genesis"
	// LinkData holds records: every delivered record in [First, Next) is in
	// Objects (or the dead letters), exactly once.
	LinkData = "data"
	// LinkGap records that [First, Next) can no longer be read (retention
	// or truncation removed it before it was ingested). No objects; the
	// size of the hole is First.Distance(Next).
	LinkGap = "gap"
	// LinkReset starts a new incarnation of the source (a topic deleted
	// and re-created has a new ID and offsets from 0): positions after it
	// belong to SourceID and may repeat earlier ones. First == Next.
	LinkReset = "reset"
	// LinkEnd closes a chain: the source partition has no positions after
	// Next (a Kinesis shard closed by a split or a merge and read to its
	// end). First == Next, no objects, and no link follows it, so a
	// restarted reader never reads the partition again and the partitions
	// that continue it (a shard's children) may start.
	LinkEnd = "end"
)

// CommitRecord is one link of a source partition's chain. Links are
// numbered densely (Seq 0, 1, 2, ...) and each is created conditionally
// under LinkKey at its number, so of two writers racing for a link exactly
// one wins. A data link says that the delivered records of the partition
// in [First, Next) are durably in Objects, each exactly once; each link
// starts where the one before it ends, except a reset.
//
// Version-1 records (keyed by first offset, no Seq, Kind or positions) are
// read and normalised: Seq is their index on the chain, Kind is data and
// First/Next are their offsets. They are never written again: a version-1
// chain is continued by a version-2 genesis at its end.
type CommitRecord struct {
	Version   int    `json:"version"`
	Table     string `json:"table"`
	Source    string `json:"source"`    // e.g. "kafka:events" (kind:topic)
	Partition string `json:"partition"` // Kafka partition number, Kinesis shard id, inbox object
	Seq       int64  `json:"seq"`
	Kind      string `json:"kind,omitempty"`
	// First and Next bound the positions the link covers, Next exclusive:
	// where the next link starts.
	First Position `json:"first"`
	Next  Position `json:"next"`
	// SourceID names the incarnation of the source the positions belong to
	// (a Kafka topic ID); set on genesis and reset links, carried by the
	// links after them.
	SourceID string `json:"source_id,omitempty"`
	// Reason says why a genesis starts where it does, or why a gap or reset
	// happened, for operators.
	Reason string `json:"reason,omitempty"`
	// Lag is how far behind the source's end the partition was when the
	// link's last record was read (for Kafka, offsets up to the last stable
	// offset). A partition is idle only when its last link has no lag: a
	// lagging or stuck one holds the watermark back however long it has
	// not committed.
	Lag int64 `json:"lag,omitempty"`
	// FirstOffset and NextOffset are the version-1 form of First and Next;
	// only version-1 records have them.
	FirstOffset int64             `json:"first_offset,omitempty"`
	NextOffset  int64             `json:"next_offset,omitempty"`
	Records     int64             `json:"records"` // rows written to raw objects
	DeadLetters int64             `json:"dead_letters"`
	Objects     []CommittedObject `json:"objects"`
	Writer      string            `json:"writer"` // which process/attempt wrote it
	CommittedAt time.Time         `json:"committed_at"`

	// flat: read from a version-2 link's flat key (written before link
	// buckets), not from LinkKey; see ChainMark.Bucketed.
	flat bool
}

// CommitRecordVersion is the version this binary writes; it reads it and
// version 1.
const CommitRecordVersion = 2

// CommitsRoot is the prefix under which all commit records live; nothing else
// is stored there.
const CommitsRoot = "_sluice/commits/"

// CommitPrefix is where the commit records of one table live.
func CommitPrefix(table string) string { return CommitsRoot + table + "/" }

// PartitionCommitPrefix is where the chain of one source partition lives.
func PartitionCommitPrefix(table, source, partition string) string {
	return CommitPrefix(table) + source + "/" + partition + "/"
}

// linkPrefix starts the names of version-2 links; it sorts after the digits
// of version-1 names, so one listing yields the old chain, then the new.
const linkPrefix = "seq-"

// LinkBucketSize is how many consecutive links share a directory. A chain
// two links a minute long writes a million links a year; kept in one
// directory, every listing of the partition on the local store (and on
// S3 servers backed by a file system, such as versitygw) reads them all,
// seconds per resume. In directories of LinkBucketSize, a listing from a
// link reads the partition's directory (one entry per bucket and per
// checkpoint) and the buckets from that link's on.
const LinkBucketSize = 4096

// LinkKey is the key of link seq of a partition's version-2 chain:
// seq-<last>/seq-<seq>.json, where <last> is the last link the bucket can
// hold. Zero-padding keeps lexical order equal to link order, and naming
// the bucket after its last link makes it sort after the flat name
// (seq-<n>.json, see flatLinkKey) of every link before it, so a chain
// written flat by an older binary and continued in buckets still lists in
// link order. The key is a function of seq alone: two writers racing for a
// link race for one key.
func LinkKey(table, source, partition string, seq int64) string {
	return fmt.Sprintf("%s%s/%s%020d.json", PartitionCommitPrefix(table, source, partition), linkBucketName(seq), linkPrefix, seq)
}

// flatLinkKey is where binaries before LinkBucketSize stored link seq:
// directly in the partition's directory. Links there are read; the only
// object this binary writes there is the move marker (see moved.go).
func flatLinkKey(table, source, partition string, seq int64) string {
	return fmt.Sprintf("%s%s%020d.json", PartitionCommitPrefix(table, source, partition), linkPrefix, seq)
}

func linkBucketName(seq int64) string {
	return fmt.Sprintf("%s%020d", linkPrefix, seq-seq%LinkBucketSize+LinkBucketSize-1)
}

// isLinkBucketName says whether a path segment names a link bucket. No
// partition may have such a segment (ValidateCommitNames), so a key's
// partition is never in doubt.
func isLinkBucketName(seg string) bool {
	digits, ok := strings.CutPrefix(seg, linkPrefix)
	if !ok || len(digits) != 20 {
		return false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// partitionEntry returns the name of a key under a partition's commit
// prefix (what follows the prefix, less a link bucket or the checkpoint
// directory), and whether it is in a link bucket; ok is false for a key of
// another partition nested under this one's prefix (an inbox partition
// with a "/").
func partitionEntry(prefix, key string) (name string, bucketed, ok bool) {
	rest, found := strings.CutPrefix(key, prefix)
	if !found {
		return "", false, false
	}
	dir, name, nested := strings.Cut(rest, "/")
	if !nested {
		return rest, false, true
	}
	if !isPartitionDirName(dir) || strings.Contains(name, "/") {
		return "", false, false
	}
	return name, dir != checkpointDir, true
}

// isPartitionDirName says whether a path segment names a directory of a
// partition's own: a link bucket or the checkpoints'.
func isPartitionDirName(seg string) bool { return seg == checkpointDir || isLinkBucketName(seg) }

// linkNumber parses a link's file name, seq-<20 digits>.json.
func linkNumber(name string) (int64, bool) {
	digits, ok := strings.CutSuffix(strings.TrimPrefix(name, linkPrefix), ".json")
	if !ok || len(digits) != 20 || !strings.HasPrefix(name, linkPrefix) {
		return 0, false
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	return n, err == nil
}

// CommitKey is the key of a version-1 record, whose chain link starts at
// firstOffset. Only reading (and tests that write old lakes) use it.
func CommitKey(table, source, partition string, firstOffset int64) string {
	return fmt.Sprintf("%s%020d.json", PartitionCommitPrefix(table, source, partition), firstOffset)
}

// RecordKey is where rec is stored.
func RecordKey(rec CommitRecord) string {
	if rec.Version == 1 {
		return CommitKey(rec.Table, rec.Source, rec.Partition, rec.FirstOffset)
	}
	if rec.flat {
		return flatLinkKey(rec.Table, rec.Source, rec.Partition, rec.Seq)
	}
	return LinkKey(rec.Table, rec.Source, rec.Partition, rec.Seq)
}

// SourceStart is pinned once per (table, source) when the first partition
// of a source with a start_offset of latest is opened: partitions that did
// not exist then (added to the topic later) start at their beginning.
type SourceStart struct {
	Partitions int       `json:"partitions"` // partitions the source had
	PinnedAt   time.Time `json:"pinned_at"`
}

// SourceStartKey is where a source's start is pinned.
func SourceStartKey(table, source string) string {
	return "_sluice/starts/" + table + "/" + source + ".json"
}

// ChecksumWriter computes the checksum of what is written to it, for
// objects streamed rather than held in memory.
type ChecksumWriter struct{ h hash.Hash32 }

// NewChecksumWriter returns a writer with nothing written yet.
func NewChecksumWriter() *ChecksumWriter { return &ChecksumWriter{h: crc32.New(castagnoli)} }

func (c *ChecksumWriter) Write(p []byte) (int, error) { return c.h.Write(p) }

// Sum is the checksum, in CommittedObject.Checksum's form, of what was written.
func (c *ChecksumWriter) Sum() string { return fmt.Sprintf("crc32c:%08x", c.h.Sum32()) }

// Offsets returns the link's range as int64 offsets (Kafka), with -1 for a
// position that does not fit.
func (r CommitRecord) Offsets() (first, next int64) {
	first, ok := r.First.Int64()
	if !ok {
		first = -1
	}
	next, ok = r.Next.Int64()
	if !ok {
		next = -1
	}
	return first, next
}
