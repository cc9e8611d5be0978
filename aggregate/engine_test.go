package aggregate_test

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/aggregate"
	"github.com/sluicehq/sluice/aggregate/aggtest"
	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/schema"
)

// testStart is 2026-01-01T00:00:00Z, a day boundary.
var testStart = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// genConfig shapes random events for the sample table.
type genConfig struct {
	seed      uint64
	n         int
	span      time.Duration // event times spread over [testStart, testStart+span)
	nullShare float64
	// boundaryShare of events sit exactly on a minute boundary or 1µs before.
	boundaryShare float64
	// outsideShare of events lie up to an hour before or after the span.
	outsideShare float64
	users        int
}

var genEventTypes = []string{"page_view", "page_view", "page_view", "page_view", "click", "click", "search", "add_to_cart", "purchase", "signup"}
var genCountries = []string{"US", "US", "US", "US", "US", "DE", "DE", "GB", "IN", "BR", "FR", "JP", "CA", "ES", "IT", "NL", "MX", "AU", "PL", "SE"}

// genEvents returns JSON records for the sample events table: skewed event
// types, countries and users (Zipf), some nulls, values on window
// boundaries and outside the range.
func genEvents(cfg genConfig) [][]byte {
	r := rand.New(rand.NewPCG(cfg.seed, cfg.seed^0xabcdef))
	users := cfg.users
	if users == 0 {
		users = 5000
	}
	zipf := rand.NewZipf(r, 1.2, 1, uint64(users-1))
	out := make([][]byte, 0, cfg.n)
	spanUS := cfg.span.Microseconds()
	for i := 0; i < cfg.n; i++ {
		us := testStart.UnixMicro() + r.Int64N(spanUS)
		switch x := r.Float64(); {
		case x < cfg.boundaryShare/2:
			us = us / 60e6 * 60e6
		case x < cfg.boundaryShare:
			us = us/60e6*60e6 - 1
		case x < cfg.boundaryShare+cfg.outsideShare/2:
			us = testStart.UnixMicro() - 1 - r.Int64N(3600e6)
		case x < cfg.boundaryShare+cfg.outsideShare:
			us = testStart.UnixMicro() + spanUS + r.Int64N(3600e6)
		}
		var b strings.Builder
		b.WriteString(`{"ts":"`)
		b.WriteString(time.UnixMicro(us).UTC().Format("2006-01-02T15:04:05.000000Z"))
		fmt.Fprintf(&b, `","event_id":"e%d","user_id":"u_%d","event_type":%q`, i, zipf.Uint64(), genEventTypes[r.IntN(len(genEventTypes))])
		if r.Float64() < cfg.nullShare {
			b.WriteString(`,"country":null`)
		} else {
			fmt.Fprintf(&b, `,"country":%q`, genCountries[r.IntN(len(genCountries))])
		}
		b.WriteString(`,"device":"mobile"`)
		amount := 0.0
		if r.IntN(4) == 0 {
			amount = float64(r.IntN(100000)) / 100 * math.Pow(10, float64(r.IntN(7)-3))
		}
		if r.IntN(50) == 0 {
			amount = -amount
		}
		fmt.Fprintf(&b, `,"amount":%s`, strconv.FormatFloat(amount, 'g', -1, 64))
		lat := int64(math.Exp(math.Log(80)+0.8*r.NormFloat64())) + 1
		fmt.Fprintf(&b, `,"latency_ms":%d,"ok":%v}`, lat, r.IntN(50) != 0)
		out = append(out, []byte(b.String()))
	}
	return out
}

// makeObjects decodes records with the real decoder and writes raw objects
// with the real writer, perObject records each, as ingest does.
func makeObjects(tb testing.TB, t *schema.Table, records [][]byte, perObject int) [][]byte {
	tb.Helper()
	dec := schema.NewDecoder(t, schema.WithNow(func() time.Time { return testStart.Add(1000 * time.Hour) }))
	var objs [][]byte
	for start := 0; start < len(records); start += perObject {
		b := schema.NewBatch(t, nil)
		for i, rec := range records[start:min(start+perObject, len(records))] {
			if _, err := dec.Decode(b, rec, schema.Meta{Source: "kafka:events", Partition: "0", Offset: int64(start + i)}); err != nil {
				tb.Fatalf("decode %s: %v", rec, err)
			}
		}
		rec := b.NewRecord()
		var buf bytes.Buffer
		if _, err := schema.WriteParquet(&buf, t, rec, nil, schema.WriterOptions{}); err != nil {
			tb.Fatal(err)
		}
		rec.Release()
		objs = append(objs, buf.Bytes())
	}
	return objs
}

// typesTable exercises every dimension and measure type: int64 and bool
// dimensions, a millisecond event time, timestamp min/max, int64 sum and
// avg, distinct over int64 and float64, quantiles over float64.
const typesYAML = `
tables:
  - name: typed
    event_time: {field: at}
    fields:
      - {name: at, type: timestamp, format: unix_ms, unit: millis}
      - {name: seen, type: timestamp, format: unix_us, nullable: true}
      - {name: shard, type: int64, nullable: true}
      - {name: bot, type: bool}
      - {name: n, type: int64, nullable: true}
      - {name: x, type: float64, nullable: true}
    rollup:
      windows: [30s, 1m, 10m]
      dimensions: [shard, bot]
      measures:
        - {name: rows, kind: count}
        - {name: n_sum, kind: sum, field: n}
        - {name: n_avg, kind: avg, field: n}
        - {name: n_min, kind: min, field: n}
        - {name: x_max, kind: max, field: x}
        - {name: x_min, kind: min, field: x}
        - {name: first_seen, kind: min, field: seen}
        - {name: last_seen, kind: max, field: seen}
        - {name: x_sum, kind: sum, field: x}
        - {name: x_avg, kind: avg, field: x}
        - {name: ns, kind: distinct, field: n, precision: 10}
        - {name: xs, kind: distinct, field: x}
        - {name: xq, kind: quantiles, field: x, quantiles: [0, 0.1, 0.5, 0.999, 1], relative_accuracy: 0.02}
`

func typesTable(tb testing.TB) *schema.Table {
	tb.Helper()
	ts, err := schema.Parse([]byte(typesYAML), "typed.yaml")
	if err != nil {
		tb.Fatal(err)
	}
	return ts[0]
}

func genTyped(seed uint64, n int, span time.Duration) [][]byte {
	r := rand.New(rand.NewPCG(seed, 7))
	out := make([][]byte, 0, n)
	for i := 0; i < n; i++ {
		ms := testStart.UnixMilli() + r.Int64N(span.Milliseconds())
		if r.IntN(20) == 0 {
			ms = ms / 30000 * 30000 // on a 30s boundary
		}
		var b strings.Builder
		fmt.Fprintf(&b, `{"at":%d,"bot":%v`, ms, r.IntN(3) == 0)
		if r.IntN(5) > 0 {
			fmt.Fprintf(&b, `,"seen":%d`, ms*1000-r.Int64N(1e9))
		}
		if r.IntN(6) > 0 {
			fmt.Fprintf(&b, `,"shard":%d`, r.IntN(4)-1)
		}
		if r.IntN(4) > 0 {
			fmt.Fprintf(&b, `,"n":%d`, r.Int64N(1<<40)-(1<<39))
		}
		if r.IntN(4) > 0 {
			// Mixed magnitudes and signs make float addition order matter.
			x := r.NormFloat64() * math.Pow(10, float64(r.IntN(30)-10))
			if r.IntN(30) == 0 {
				x = 0
			}
			fmt.Fprintf(&b, `,"x":%s`, strconv.FormatFloat(x, 'g', -1, 64))
		}
		b.WriteString("}")
		out = append(out, []byte(b.String()))
	}
	return out
}

func TestEngineMatchesExact(t *testing.T) {
	sample, typed := testkit.SampleTable(t), typesTable(t)
	cases := []struct {
		name     string
		table    *schema.Table
		records  [][]byte
		per      int
		window   time.Duration
		from, to time.Time
	}{
		{"sample 1m", sample, genEvents(genConfig{seed: 1, n: 20000, span: 30 * time.Minute, nullShare: 0.05, boundaryShare: 0.1, outsideShare: 0.05}),
			3000, time.Minute, testStart, testStart.Add(30 * time.Minute)},
		{"sample 5m subrange", sample, genEvents(genConfig{seed: 2, n: 20000, span: 30 * time.Minute, nullShare: 0.2, boundaryShare: 0.1}),
			7000, 5 * time.Minute, testStart.Add(5 * time.Minute), testStart.Add(20 * time.Minute)},
		{"sample 1h few users", sample, genEvents(genConfig{seed: 3, n: 5000, span: 2 * time.Hour, users: 3, nullShare: 1}),
			1000, time.Hour, testStart, testStart.Add(2 * time.Hour)},
		{"sample empty range", sample, genEvents(genConfig{seed: 4, n: 1000, span: time.Hour}),
			500, time.Minute, testStart.Add(-time.Hour), testStart.Add(-time.Hour)},
		{"typed 30s", typed, genTyped(5, 20000, 20*time.Minute), 2500, 30 * time.Second, testStart, testStart.Add(20 * time.Minute)},
		{"typed 10m", typed, genTyped(6, 10000, 20*time.Minute), 4000, 10 * time.Minute, testStart, testStart.Add(20 * time.Minute)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			objs := makeObjects(t, tc.table, tc.records, tc.per)
			exact, err := aggtest.ExactRecompute(tc.table, tc.window, tc.from, tc.to, objs...)
			if err != nil {
				t.Fatal(err)
			}
			var first []byte
			for _, workers := range []int{1, 3} {
				s, st, err := aggregate.AggregateObjects(context.Background(), tc.table, tc.window, tc.from, tc.to, workers, objs)
				if err != nil {
					t.Fatal(err)
				}
				if err := exact.Check(tc.table, s); err != nil {
					t.Fatalf("workers %d:\n%v", workers, err)
				}
				var inRange int64
				for _, g := range exact.Rows {
					inRange += g.N
				}
				if st.Rows != int64(len(tc.records)) || st.Rows-st.OutOfRange != inRange || s.TotalRows() != inRange || st.Objects != int64(len(objs)) {
					t.Errorf("workers %d: stats %+v, %d records, %d in range, summary rows %d", workers, st, len(tc.records), inRange, s.TotalRows())
				}
				var buf bytes.Buffer
				if err := aggregate.WriteSummary(&buf, tc.table, s, nil); err != nil {
					t.Fatal(err)
				}
				// Same bytes whatever the parallelism: every state merges exactly.
				if first == nil {
					first = buf.Bytes()
				} else if !bytes.Equal(first, buf.Bytes()) {
					t.Errorf("workers %d wrote different bytes than 1 worker", workers)
				}
			}
		})
	}
}

func TestMergeMatchesDirect(t *testing.T) {
	cases := []struct {
		name    string
		table   *schema.Table
		records [][]byte
		steps   []time.Duration // finest first
		span    time.Duration
	}{
		{"sample 1m 5m 1h", testkit.SampleTable(t), genEvents(genConfig{seed: 9, n: 30000, span: 2 * time.Hour, nullShare: 0.1, boundaryShare: 0.1}),
			[]time.Duration{time.Minute, 5 * time.Minute, time.Hour}, 2 * time.Hour},
		{"typed 30s 1m 10m", typesTable(t), genTyped(10, 20000, 40*time.Minute),
			[]time.Duration{30 * time.Second, time.Minute, 10 * time.Minute}, 40 * time.Minute},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			objs := makeObjects(t, tc.table, tc.records, 5000)
			from, to := testStart, testStart.Add(tc.span)
			var prev *aggregate.Summary
			for i, w := range tc.steps {
				direct, _, err := aggregate.AggregateObjects(context.Background(), tc.table, w, from, to, 2, objs)
				if err != nil {
					t.Fatal(err)
				}
				if i == 0 {
					prev = direct
					continue
				}
				// Merge the finer summary after a file round trip, in pieces
				// given in reverse order, as a scheduler would.
				finer := roundTrip(t, tc.table, prev)
				mid := len(finer.Rows) / 2
				a := &aggregate.Summary{Window: finer.Window, Rows: finer.Rows[:mid]}
				b := &aggregate.Summary{Window: finer.Window, Rows: finer.Rows[mid:]}
				merged, err := aggregate.Merge(tc.table, w, b, nil, a)
				if err != nil {
					t.Fatal(err)
				}
				exact, err := aggtest.ExactRecompute(tc.table, w, from, to, objs...)
				if err != nil {
					t.Fatal(err)
				}
				if err := exact.Check(tc.table, merged); err != nil {
					t.Fatalf("merged %s:\n%v", w, err)
				}
				// Sketches of equal contents encode equally and float sums
				// are exact, so the merged file is the direct one, byte for byte.
				if !bytes.Equal(encode(t, tc.table, merged), encode(t, tc.table, direct)) {
					t.Errorf("merged %s summary differs from the direct one", w)
				}
				prev = merged
			}
		})
	}
}

func encode(t testing.TB, tbl *schema.Table, s *aggregate.Summary) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := aggregate.WriteSummary(&buf, tbl, s, map[string]string{"b": "2", "a": "1"}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func roundTrip(t testing.TB, tbl *schema.Table, s *aggregate.Summary) *aggregate.Summary {
	t.Helper()
	b := encode(t, tbl, s)
	out, err := aggregate.ReadSummary(bytes.NewReader(b), int64(len(b)), tbl)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
