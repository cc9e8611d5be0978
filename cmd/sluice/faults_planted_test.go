package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
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

// TestFaultsCatchPlantedFaults shows that the fault suite's check goes red
// when data is lost or damaged: the same check (faultsCheck) that ends
// every scenario runs over committed data with one fault planted at a time.
// It runs in the default suite (no processes, a second or two).
func TestFaultsCatchPlantedFaults(t *testing.T) {
	for _, tc := range []struct {
		name string
		// skip is an offset the writer never gets, as a build that dropped
		// a record would behave; -1: none.
		skip     int64
		plant    func(t *testing.T, b objstore.Bucket, objs []lake.CommittedObject)
		wantOK   bool
		wantLost bool
	}{
		{name: "nothing planted", skip: -1, wantOK: true},
		{name: "record dropped before the writer", skip: 37, wantLost: true},
		{name: "committed raw object deleted", skip: -1, wantLost: true, plant: func(t *testing.T, b objstore.Bucket, objs []lake.CommittedObject) {
			deleteFirst(t, b, objs, lake.KindRaw)
		}},
		{name: "committed dead-letter object deleted", skip: -1, wantLost: true, plant: func(t *testing.T, b objstore.Bucket, objs []lake.CommittedObject) {
			deleteFirst(t, b, objs, lake.KindDeadLetter)
		}},
		{name: "committed raw object truncated", skip: -1, plant: func(t *testing.T, b objstore.Bucket, objs []lake.CommittedObject) {
			for _, o := range objs {
				if o.Kind != lake.KindRaw {
					continue
				}
				rc, err := b.Get(context.Background(), o.Key)
				if err != nil {
					t.Fatal(err)
				}
				data, err := io.ReadAll(rc)
				rc.Close()
				if err != nil {
					t.Fatal(err)
				}
				half := data[:len(data)/2]
				if err := b.Put(context.Background(), o.Key, bytes.NewReader(half), int64(len(half))); err != nil {
					t.Fatal(err)
				}
				return
			}
			t.Fatal("no raw object to truncate")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := objstoretest.NewLocal(t)
			exp := commitSample(t, b, 400, tc.skip)
			if tc.plant != nil {
				recs, err := lake.NewCommitLog(b).Records(context.Background(), crashTable)
				if err != nil {
					t.Fatal(err)
				}
				var objs []lake.CommittedObject
				for _, r := range recs {
					objs = append(objs, r.Objects...)
				}
				tc.plant(t, b, objs)
			}
			rep, row, err := faultsCheck(context.Background(), b, exp)
			if err != nil {
				t.Fatal(err)
			}
			if gotOK := row.verdict == "ok"; gotOK != tc.wantOK {
				t.Fatalf("verdict %s, want ok=%v:\n%s", row.verdict, tc.wantOK, rep)
			}
			if tc.wantLost && row.lost == 0 {
				t.Fatalf("no loss reported:\n%s", rep)
			}
		})
	}
}

func deleteFirst(t *testing.T, b objstore.Bucket, objs []lake.CommittedObject, kind string) {
	t.Helper()
	for _, o := range objs {
		if o.Kind == kind {
			if err := b.Delete(context.Background(), o.Key); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("no %s object to delete", kind)
}

// commitSample commits n records of partition 0 through the ingest writer
// in several flushes (one in 20 malformed), except offset skip, which the
// expectation still holds: what a build that drops a record would leave.
func commitSample(t *testing.T, b objstore.Bucket, n int, skip int64) *verify.Expected {
	t.Helper()
	events := testkit.SampleTable(t)
	w, err := ingest.NewWriter(ingest.WriterConfig{FlushRecords: 1 << 20, FlushInterval: time.Hour}.WithDefaults(),
		b, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	p, _, err := w.OpenPartition(context.Background(), events, crashSource, "0", ingest.StartAt(lake.Position{}, "planted"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	exp := verify.NewExpected()
	ts := time.Now().UTC().Add(-time.Hour)
	flush := func() { ingesttest.Commit(context.Background(), t, p) }
	for i := range int64(n) {
		bad := i%20 == 19
		if bad {
			exp.AddBad("0", i)
		} else {
			exp.AddGood("0", i)
		}
		if i == skip {
			continue
		}
		v := fmt.Appendf(nil, `{"ts":%q,"event_id":"e%d","user_id":"u","event_type":"click","amount":1,"latency_ms":1,"ok":true}`,
			ts.Format(time.RFC3339Nano), i)
		if bad {
			v = []byte(`{"ts":` + strconv.FormatInt(i, 10))
		}
		p.Append(v, lake.PositionOf(i), ts)
		if i%97 == 96 {
			flush()
		}
	}
	flush()
	return exp
}
