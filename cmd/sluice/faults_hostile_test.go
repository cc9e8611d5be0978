package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/ingest"
	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/internal/testkit/ingesttest"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/loadtest/verify"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/objstore/objstoretest"
)

// hostileRecord is one file of schema/testdata/hostile: its bytes and the
// reason the events table must give ("ok": it must be accepted).
type hostileRecord struct {
	name, want string
	value      []byte
}

func loadHostileCorpus(t *testing.T) []hostileRecord {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "..", "schema", "testdata", "hostile", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 40 {
		t.Fatalf("only %d hostile records found", len(files))
	}
	sort.Strings(files)
	out := make([]hostileRecord, 0, len(files))
	for _, f := range files {
		v, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		want, _, _ := strings.Cut(name, "--")
		out = append(out, hostileRecord{name: name, want: want, value: v})
	}
	return out
}

// TestHostileCorpusThroughIngest runs the hostile-record corpus, each record
// between good ones, through the ingest writer into a bucket, in several
// flushes over two partitions, then reads back what readers can see: every
// refused record is in the dead-letter area once, with the reason its file
// name gives and its exact bytes; every good record (and every odd but
// valid one) is committed once.
func TestHostileCorpusThroughIngest(t *testing.T) {
	corpus := loadHostileCorpus(t)
	events := testkit.SampleTable(t)
	bucket := objstoretest.NewLocal(t)
	w, err := ingest.NewWriter(ingest.WriterConfig{FlushRecords: 1 << 20, FlushInterval: time.Hour}.WithDefaults(),
		bucket, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()

	const source, goodBetween, flushEvery = "kafka:events", 3, 17
	exp := verify.NewExpected()
	wantReason := map[string]string{} // "partition/offset" of refused records
	wantValue := map[string][]byte{}
	ts := time.Now().UTC().Add(-time.Hour)
	ctx := context.Background()
	for _, part := range []string{"0", "1"} {
		var offset int64 = 100 // a chain need not start at 0
		p, _, err := w.OpenPartition(ctx, events, source, part, ingest.StartAt(lake.PositionOf(offset), "hostile"))
		if err != nil {
			t.Fatal(err)
		}
		flushes := 0
		flush := func() {
			t.Helper()
			if r, failed := ingesttest.Flush(ctx, t, p); failed || r.Err != nil {
				t.Fatalf("flush of partition %s: %v", part, r.Err)
			}
			flushes++
		}
		appended := 0
		add := func(v []byte, good bool, reason string) {
			if !p.Append(v, lake.PositionOf(offset), ts) {
				t.Fatalf("offset %d skipped", offset)
			}
			k := part + "/" + strconv.FormatInt(offset, 10)
			if good {
				exp.AddGood(part, offset)
			} else {
				exp.AddBad(part, offset)
				wantReason[k], wantValue[k] = reason, v
			}
			offset++
			if appended++; appended%flushEvery == 0 {
				flush()
			}
		}
		for i, h := range corpus {
			for j := range goodBetween {
				add(fmt.Appendf(nil, `{"ts":%q,"event_id":"g-%s-%d-%d","user_id":"u","event_type":"click","amount":1.5,"latency_ms":3,"ok":true}`,
					ts.Format(time.RFC3339Nano), part, i, j), true, "")
			}
			add(h.value, h.want == "ok", h.want)
		}
		flush()
		p.Close()
		if flushes < 5 {
			t.Fatalf("partition %s: %d flushes, want several", part, flushes)
		}
	}

	got, err := verify.ReadCommitted(ctx, bucket, events.Name, verify.Options{Source: source, EventIDColumn: "event_id"})
	if err != nil {
		t.Fatal(err)
	}
	rep := verify.Compare(exp, got)
	if !rep.OK() {
		t.Fatalf("the verifier found problems:\n%s", rep)
	}
	good, bad := exp.Counts()
	if rep.CommittedRows != good || rep.CommittedDeadLetters != bad {
		t.Fatalf("committed %d rows and %d dead letters, want %d and %d", rep.CommittedRows, rep.CommittedDeadLetters, good, bad)
	}

	// The verifier checks that every dead letter has a reason; this checks it
	// is the right one, and that the original bytes are kept.
	dead := readDeadLetters(t, bucket, events.Name)
	for k, want := range wantReason {
		dl, ok := dead[k]
		if !ok {
			t.Errorf("%s (%s): not in the dead-letter area", k, want)
			continue
		}
		if dl.Reason != want {
			t.Errorf("%s: reason %q (%s), want %q", k, dl.Reason, dl.Error, want)
		}
		if !bytes.Equal(dl.bytes(), wantValue[k]) {
			t.Errorf("%s (%s): dead letter holds %.40q, want the original %.40q", k, want, dl.bytes(), wantValue[k])
		}
	}
	if len(dead) != len(wantReason) {
		t.Errorf("%d dead letters, want %d", len(dead), len(wantReason))
	}
	t.Logf("%d hostile records (%d refused, %d odd but valid) among %d good ones: %d rows and %d dead letters committed",
		2*len(corpus), len(wantReason), int(good)-2*len(corpus)*goodBetween, 2*len(corpus)*goodBetween, rep.CommittedRows, rep.CommittedDeadLetters)
}

type deadLetterOut struct {
	Partition string  `json:"partition"`
	Offset    int64   `json:"offset"`
	Reason    string  `json:"reason"`
	Error     string  `json:"error"`
	Value     *string `json:"value"`
	ValueB64  []byte  `json:"value_b64"`
}

func (d deadLetterOut) bytes() []byte {
	if d.Value != nil {
		return []byte(*d.Value)
	}
	return d.ValueB64
}

// readDeadLetters reads the committed dead-letter objects of table, by
// "partition/offset".
func readDeadLetters(t *testing.T, b objstore.Bucket, table string) map[string]deadLetterOut {
	t.Helper()
	ctx := context.Background()
	recs, err := lake.NewCommitLog(b).Records(ctx, table)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]deadLetterOut{}
	for _, rec := range recs {
		for _, obj := range rec.Objects {
			if obj.Kind != lake.KindDeadLetter {
				continue
			}
			rc, err := b.Get(ctx, obj.Key)
			if err != nil {
				t.Fatal(err)
			}
			data, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(bytes.NewReader(data))
			sc.Buffer(nil, 16<<20)
			for sc.Scan() {
				var dl deadLetterOut
				if err := json.Unmarshal(sc.Bytes(), &dl); err != nil {
					t.Fatalf("%s: %v", obj.Key, err)
				}
				out[dl.Partition+"/"+strconv.FormatInt(dl.Offset, 10)] = dl
			}
			if err := sc.Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	return out
}
