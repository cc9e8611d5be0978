package kafkabroker

import (
	"bufio"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Producer sequence state after a crash.
//
// An idempotent producer numbers its batches per partition, and the broker
// remembers the last five it appended for each producer, so that a retry of
// a batch whose acknowledgement was lost is answered with the original
// offset instead of being appended again. kfake keeps that memory in
// seq_windows.json, which it writes only on a clean close. After kill -9 the
// restarted broker has either no windows or the ones from the last clean
// close, so a producer's retry across the crash is appended a second time
// (or refused as out of order). Apache Kafka does not have this gap: it
// rebuilds producer state from the log on start.
//
// rebuildSequenceWindows does the same before kfake loads the data dir: it
// reads every partition's segments, which hold the batches exactly as they
// were appended (producer id, epoch, first sequence, assigned offset), and
// rewrites seq_windows.json from them. Windows of producers with no batch
// left in the log (retention deleted them) are kept from the old file.
//
// The file formats are kfake's (persist.go at the version in go.mod); the
// test TestRetryAcrossACrashIsNotAppendedTwice fails if they drift.

const (
	seqWindowsFile = "seq_windows.json"
	// seqWindowSize is how many batches per producer and partition the
	// broker remembers: the most a producer has in flight.
	seqWindowSize = 5
	// batchHeaderSize is a RecordBatch's fixed header, up to and including
	// the record count.
	batchHeaderSize = 61
	// control is the RecordBatch attribute bit of transaction markers.
	controlBatchAttr = 0x20
)

// seqWindowsDoc is seq_windows.json. Windows kept from the old file are
// carried over byte for byte, whatever their format.
type seqWindowsDoc struct {
	Version int               `json:"version"`
	Windows []json.RawMessage `json:"windows"`
}

// seqWindowEntry is one producer's window on one partition.
type seqWindowEntry struct {
	PID     int64                      `json:"pid"`
	Topic   string                     `json:"topic"`
	Part    int32                      `json:"partition"`
	Entries [seqWindowSize]seqPidEntry `json:"entries"`
	Count   uint8                      `json:"count"`
	At      uint8                      `json:"at"`
	Epoch   int16                      `json:"epoch"`
	Seen    bool                       `json:"seen"`
	NextSeq int32                      `json:"next_seq"`
}

type seqPidEntry struct {
	FirstSeq int32 `json:"first_seq"`
	NextSeq  int32 `json:"next_seq"`
	Offset   int64 `json:"offset"`
}

type windowKey struct {
	pid   int64
	topic string
	part  int32
}

// push records an appended batch the way kfake's pushAndValidate does for
// an accepted one: a new epoch starts the window over.
func (w *seqWindowEntry) push(epoch int16, firstSeq int32, records int32, offset int64) {
	next := int32((int64(firstSeq) + int64(records)) % math.MaxInt32)
	if !w.Seen || epoch != w.Epoch {
		w.Seen, w.Epoch = true, epoch
		w.Entries = [seqWindowSize]seqPidEntry{{firstSeq, next, offset}}
		w.At, w.Count, w.NextSeq = 1, 1, next
		return
	}
	w.NextSeq = next
	w.Entries[w.At] = seqPidEntry{firstSeq, next, offset}
	w.At = (w.At + 1) % seqWindowSize
	if w.Count < seqWindowSize {
		w.Count++
	}
}

// rebuildSequenceWindows rewrites dataDir's seq_windows.json from the
// batches in its partition segments. It returns how many producer windows
// it rebuilt. A data dir kfake has not initialised yet is left alone.
func rebuildSequenceWindows(dataDir string) (int, error) {
	if _, err := os.Stat(filepath.Join(dataDir, "meta.json")); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, nil
		}
		return 0, err
	}
	doc := seqWindowsDoc{Version: 1}
	path := filepath.Join(dataDir, seqWindowsFile)
	if raw, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(raw, &doc); err != nil {
			// kfake would refuse to start on it; the log has the truth.
			doc = seqWindowsDoc{Version: 1}
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return 0, err
	}

	rebuilt, err := windowsFromSegments(filepath.Join(dataDir, "partitions"))
	if err != nil {
		return 0, err
	}
	windows := make([]json.RawMessage, 0, len(doc.Windows)+len(rebuilt))
	for _, raw := range doc.Windows {
		var w seqWindowEntry
		if err := json.Unmarshal(raw, &w); err != nil {
			continue
		}
		if _, inLog := rebuilt[windowKey{w.PID, w.Topic, w.Part}]; !inLog {
			windows = append(windows, raw)
		}
	}
	keys := make([]windowKey, 0, len(rebuilt))
	for k := range rebuilt {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b windowKey) int {
		if c := strings.Compare(a.topic, b.topic); c != 0 {
			return c
		}
		if c := cmp.Compare(a.part, b.part); c != 0 {
			return c
		}
		return cmp.Compare(a.pid, b.pid)
	})
	for _, k := range keys {
		raw, err := json.Marshal(rebuilt[k])
		if err != nil {
			return 0, err
		}
		windows = append(windows, raw)
	}
	doc.Windows = windows

	out, err := json.Marshal(doc)
	if err != nil {
		return 0, err
	}
	// Write beside and rename, so a crash here leaves the old file whole.
	tmp := path + ".rebuild"
	if err := os.WriteFile(tmp, out, 0o644); err != nil {
		return 0, err
	}
	if err := os.Rename(tmp, path); err != nil {
		return 0, err
	}
	return len(rebuilt), nil
}

// windowsFromSegments replays the producer batches of every partition
// directory under dir ("<escaped topic>-<partition>").
func windowsFromSegments(dir string) (map[windowKey]*seqWindowEntry, error) {
	out := make(map[windowKey]*seqWindowEntry)
	parts, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	for _, p := range parts {
		if !p.IsDir() {
			continue
		}
		name := p.Name()
		dash := strings.LastIndexByte(name, '-')
		if dash <= 0 {
			continue
		}
		part, err := strconv.ParseInt(name[dash+1:], 10, 32)
		if err != nil {
			continue
		}
		topic, err := url.PathUnescape(name[:dash])
		if err != nil {
			continue
		}
		if err := replayPartition(filepath.Join(dir, name), topic, int32(part), out); err != nil {
			return nil, fmt.Errorf("partition %s-%d: %w", topic, part, err)
		}
	}
	return out, nil
}

// replayPartition pushes the producer batches of one partition's segments,
// in offset order, into windows.
func replayPartition(pdir, topic string, part int32, windows map[windowKey]*seqWindowEntry) error {
	files, err := os.ReadDir(pdir)
	if err != nil {
		return err
	}
	var bases []int64
	for _, f := range files {
		if base, ok := strings.CutSuffix(f.Name(), ".dat"); ok {
			if n, err := strconv.ParseInt(base, 10, 64); err == nil {
				bases = append(bases, n)
			}
		}
	}
	slices.Sort(bases)
	for _, base := range bases {
		err := replaySegment(filepath.Join(pdir, strconv.FormatInt(base, 10)+".dat"), func(b batchHeader) {
			k := windowKey{b.producerID, topic, part}
			w := windows[k]
			if w == nil {
				w = &seqWindowEntry{PID: b.producerID, Topic: topic, Part: part}
				windows[k] = w
			}
			w.push(b.producerEpoch, b.firstSeq, b.records, b.firstOffset)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// batchHeader is what the sequence window needs of one RecordBatch.
type batchHeader struct {
	firstOffset   int64
	producerID    int64
	producerEpoch int16
	firstSeq      int32
	records       int32
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// replaySegment calls fn for each idempotent data batch of one segment
// file, in order. It stops where kfake's load stops and truncates: at a
// torn or corrupt batch, which after a crash is the last write.
func replaySegment(path string, fn func(batchHeader)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<16)
	var buf []byte
	for {
		var head [12]byte
		if _, err := io.ReadFull(r, head[:]); err != nil {
			return nil // end of segment, or a torn length prefix
		}
		length := int(binary.BigEndian.Uint32(head[8:12]))
		if length < batchHeaderSize-12 || length > 1<<30 {
			return nil
		}
		buf = slices.Grow(buf[:0], 12+length)[:12+length]
		copy(buf, head[:])
		if _, err := io.ReadFull(r, buf[12:]); err != nil {
			return nil // torn batch
		}
		if crc32.Checksum(buf[21:], castagnoli) != binary.BigEndian.Uint32(buf[17:21]) {
			return nil
		}
		attrs := binary.BigEndian.Uint16(buf[21:23])
		b := batchHeader{
			firstOffset:   int64(binary.BigEndian.Uint64(buf[0:8])),
			producerID:    int64(binary.BigEndian.Uint64(buf[43:51])),
			producerEpoch: int16(binary.BigEndian.Uint16(buf[51:53])),
			firstSeq:      int32(binary.BigEndian.Uint32(buf[53:57])),
			records:       int32(binary.BigEndian.Uint32(buf[57:61])),
		}
		if b.producerID < 0 || b.firstSeq < 0 || attrs&controlBatchAttr != 0 {
			continue
		}
		fn(b)
	}
}
