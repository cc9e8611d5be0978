package aggregate_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/DataDog/sketches-go/ddsketch"
	"github.com/DataDog/sketches-go/ddsketch/store"

	"github.com/sluicehq/sluice/aggregate"
	"github.com/sluicehq/sluice/internal/testkit"
)

// The fold looks up the sketch bin of small integer values instead of
// computing it: every group's sketch must still be exactly the one
// DDSketch.Add builds from the group's values, whatever their size.
func TestFoldQuantilesMatchDDSketchAdd(t *testing.T) {
	tbl := testkit.SampleTable(t)
	records := genEvents(genConfig{seed: 9, n: 20000, span: 20 * time.Minute, nullShare: 0.05})
	// Values beyond the looked-up range, zero and negative ones too.
	for i, lat := range []int64{0, -3, aggregate.SmallQuantileValues - 1, aggregate.SmallQuantileValues, 1 << 40, -1 << 40} {
		records = append(records, fmt.Appendf(nil, `{"ts":"%s","event_id":"x%d","user_id":"u","event_type":"click","country":"DE","amount":1,"latency_ms":%d,"ok":true}`,
			testStart.Add(time.Duration(i)*time.Second).Format(time.RFC3339Nano), i, lat))
	}
	objs := makeObjects(t, tbl, records, 4000)
	from, to := testStart, testStart.Add(20*time.Minute)
	sum, _, err := aggregate.AggregateObjects(context.Background(), tbl, time.Minute, from, to, 2, objs)
	if err != nil {
		t.Fatal(err)
	}
	qi, mp, err := aggregate.IntQuantiles(tbl)
	if err != nil {
		t.Fatal(err)
	}
	if qi < 0 {
		t.Fatal("the sample table has no integer quantiles measure")
	}
	want := map[string]*ddsketch.DDSketch{}
	for _, rec := range records {
		var e struct {
			TS        time.Time `json:"ts"`
			EventType string    `json:"event_type"`
			Country   *string   `json:"country"`
			Latency   int64     `json:"latency_ms"`
		}
		if err := json.Unmarshal(rec, &e); err != nil {
			t.Fatal(err)
		}
		if e.TS.Before(from) || !e.TS.Before(to) {
			continue
		}
		k := fmt.Sprint(e.TS.Truncate(time.Minute).UnixMicro(), []any{e.EventType, derefOrNil(e.Country)})
		if want[k] == nil {
			want[k] = ddsketch.NewDDSketch(mp, store.NewDenseStore(), store.NewDenseStore())
		}
		_ = want[k].Add(float64(e.Latency))
	}
	if len(sum.Rows) != len(want) {
		t.Fatalf("%d groups, want %d", len(sum.Rows), len(want))
	}
	for _, r := range sum.Rows {
		k := fmt.Sprint(r.Start, r.Dims)
		if got, w := aggregate.EncodedSketch(&r.M[qi]), aggregate.EncodeDDSketch(want[k]); !bytes.Equal(got, w) {
			t.Fatalf("group %s: the fold's sketch differs from DDSketch.Add's", k)
		}
	}
}

func derefOrNil(s *string) any {
	if s == nil {
		return nil
	}
	return *s
}
