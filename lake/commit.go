// Package lake is Sluice's table format over an object store: every key
// layout, the commit records and their chains, compaction records, and the
// reader of committed data. A record is written last, conditionally, so an
// object no record names does not exist for readers.
package lake

import (
	"fmt"
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
	// Event-time range of the rows (raw objects only), microseconds since the
	// epoch, both inclusive.
	MinEventTimeMicros int64 `json:"min_event_time_us,omitempty"`
	MaxEventTimeMicros int64 `json:"max_event_time_us,omitempty"`
}

// CommitRecord says that the records of one source partition in
// [FirstOffset, NextOffset) are durably in Objects, each exactly once.
// Records of a partition form a chain: each starts where the previous ends.
// It is written last, with a conditional create under CommitKey, so two
// writers that both think they own the partition cannot both commit the same
// range.
type CommitRecord struct {
	Version     int               `json:"version"`
	Table       string            `json:"table"`
	Source      string            `json:"source"`    // e.g. "kafka:events" (kind:topic)
	Partition   string            `json:"partition"` // Kafka partition number, Kinesis shard id, inbox object
	FirstOffset int64             `json:"first_offset"`
	NextOffset  int64             `json:"next_offset"` // exclusive: where the next record of the chain starts
	Records     int64             `json:"records"`     // rows written to raw objects
	DeadLetters int64             `json:"dead_letters"`
	Objects     []CommittedObject `json:"objects"`
	Writer      string            `json:"writer"` // which process/attempt wrote it
	CommittedAt time.Time         `json:"committed_at"`
}

// CommitRecordVersion is the current CommitRecord.Version.
const CommitRecordVersion = 1

// CommitsRoot is the prefix under which all commit records live; nothing else
// is stored there.
const CommitsRoot = "_sluice/commits/"

// CommitPrefix is where the commit records of one table live.
func CommitPrefix(table string) string { return CommitsRoot + table + "/" }

// PartitionCommitPrefix is where the chain of one source partition lives.
func PartitionCommitPrefix(table, source, partition string) string {
	return CommitPrefix(table) + source + "/" + partition + "/"
}

// CommitKey is the deterministic key of the record whose chain link starts at
// firstOffset. Zero-padding keeps lexical order equal to offset order.
func CommitKey(table, source, partition string, firstOffset int64) string {
	return fmt.Sprintf("%s%020d.json", PartitionCommitPrefix(table, source, partition), firstOffset)
}
