package aggregate_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/aggregate"
	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/schema"
)

// A partial read back holds the states written: its summary file is the
// original's byte for byte, and so is what merging it gives.
func TestPartialRoundTrip(t *testing.T) {
	cases := []struct {
		name    string
		table   *schema.Table
		records [][]byte
		window  time.Duration
		span    time.Duration
	}{
		{"sample 1m", testkit.SampleTable(t), genEvents(genConfig{seed: 31, n: 20000, span: time.Hour, nullShare: 0.1, boundaryShare: 0.1}), time.Minute, time.Hour},
		{"typed 10m dense sketches", typesTable(t), genTyped(32, 40000, 20*time.Minute), 10 * time.Minute, 20 * time.Minute},
		{"typed 30s", typesTable(t), genTyped(33, 5000, 20*time.Minute), 30 * time.Second, 20 * time.Minute},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			objs := makeObjects(t, tc.table, tc.records, 5000)
			from := testStart.Add(-tc.window * 10) // rows before the epoch of the test too
			s, _, err := aggregate.AggregateObjects(context.Background(), tc.table, tc.window, from, testStart.Add(tc.span), 1, objs)
			if err != nil {
				t.Fatal(err)
			}
			b, err := aggregate.AppendPartial([]byte("prefix"), tc.table, s)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(b, []byte("prefix")) || !aggregate.IsPartial(b[6:]) {
				t.Fatal("AppendPartial did not append a partial")
			}
			b = b[6:]
			back, err := aggregate.ReadPartial(b, tc.table)
			if err != nil {
				t.Fatal(err)
			}
			want := encode(t, tc.table, s)
			if !bytes.Equal(encode(t, tc.table, back), want) {
				t.Error("the partial read back writes another summary than the original")
			}
			if tc.table.Rollup.Windows[len(tc.table.Rollup.Windows)-1]%tc.window == 0 {
				w := tc.table.Rollup.Windows[len(tc.table.Rollup.Windows)-1]
				m1, err := aggregate.Merge(tc.table, w, s)
				if err != nil {
					t.Fatal(err)
				}
				m2, err := aggregate.Merge(tc.table, w, back)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(encode(t, tc.table, m1), encode(t, tc.table, m2)) {
					t.Errorf("merged to %s, the partial read back gives another summary", w)
				}
			}
			t.Logf("%d rows: partial %d bytes, summary file %d bytes", len(s.Rows), len(b), len(want))
			if len(b) >= len(want) {
				t.Errorf("the partial (%d bytes) is not smaller than the summary file (%d bytes)", len(b), len(want))
			}
		})
	}
}

// A cut, altered or foreign partial is an error, never a panic or a
// summary of garbage.
func TestPartialRejectsDamage(t *testing.T) {
	tbl := testkit.SampleTable(t)
	objs := makeObjects(t, tbl, genEvents(genConfig{seed: 34, n: 3000, span: 10 * time.Minute, nullShare: 0.1}), 3000)
	s, _, err := aggregate.AggregateObjects(context.Background(), tbl, time.Minute, testStart, testStart.Add(10*time.Minute), 1, objs)
	if err != nil {
		t.Fatal(err)
	}
	b, err := aggregate.AppendPartial(nil, tbl, s)
	if err != nil {
		t.Fatal(err)
	}
	for n := 0; n < len(b); n += 1 + n/10 {
		if _, err := aggregate.ReadPartial(b[:n], tbl); err == nil {
			t.Fatalf("a partial cut to %d of %d bytes read without error", n, len(b))
		}
	}
	for _, i := range []int{9, len(b) / 3, len(b) / 2, len(b) - 5} {
		bad := bytes.Clone(b)
		bad[i] ^= 0x10
		if _, err := aggregate.ReadPartial(bad, tbl); err == nil {
			t.Errorf("byte %d flipped: read without error", i)
		}
	}
	if _, err := aggregate.ReadPartial(b, typesTable(t)); err == nil {
		t.Error("a partial of the events rollup read as one of the typed rollup")
	}
	other := testkit.SampleTable(t)
	ms := append([]schema.Measure(nil), other.Rollup.Measures...)
	for i := range ms {
		if ms[i].Kind == schema.KindDistinct {
			ms[i].Precision = 12
		}
	}
	r := *other.Rollup
	r.Measures = ms
	other.Rollup = &r
	if _, err := aggregate.ReadPartial(b, other); err == nil || !strings.Contains(err.Error(), "rollup shape") {
		t.Errorf("a partial read with another distinct precision: %v", err)
	}
}
