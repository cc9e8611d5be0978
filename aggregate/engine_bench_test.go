package aggregate_test

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/sluicehq/sluice/aggregate/aggtest"
	"github.com/sluicehq/sluice/schema"
)

// benchRollupYAML is the benchmark query: 1-minute windows by
// (event_type, country) with count, sum, min, max, p99 and distinct users.
const benchRollupYAML = `
    rollup:
      windows: [1m, 1h]
      dimensions: [event_type, country]
      measures:
        - {name: events, kind: count}
        - {name: amount_sum, kind: sum, field: amount}
        - {name: amount_min, kind: min, field: amount}
        - {name: amount_max, kind: max, field: amount}
        - {name: latency, kind: quantiles, field: latency_ms, quantiles: [0.99]}
        - {name: users, kind: distinct, field: user_id}
`

func benchTable(tb testing.TB) *schema.Table {
	y := string(schema.SampleYAML)
	i := bytes.Index([]byte(y), []byte("    rollup:"))
	ts, err := schema.Parse([]byte(y[:i]+benchRollupYAML), "bench.yaml")
	if err != nil {
		tb.Fatal(err)
	}
	return ts[0]
}

// weighted picks, like loadtest's generator: skewed types and countries,
// a Zipf(1.2) user over 100k, event time advancing 1000 events/s.
var (
	benchTypes     = []string{"page_view", "click", "search", "add_to_cart", "login", "purchase", "signup", "logout"}
	benchTypeW     = []int{520, 200, 90, 80, 40, 35, 20, 15}
	benchCountries = []string{"US", "DE", "GB", "IN", "BR", "FR", "JP", "CA", "ES", "IT", "NL", "MX", "AU", "PL", "SE", "KR", "TR", "ID", "NG", "ZA", "AR", "CH"}
	benchCountryW  = []int{300, 90, 80, 80, 60, 55, 50, 40, 35, 35, 25, 25, 20, 20, 15, 15, 15, 10, 10, 10, 5, 5}
)

func pickW(names []string, w []int, u int) string {
	for i, x := range w {
		if u < x {
			return names[i]
		}
		u -= x
	}
	return names[len(names)-1]
}

// benchObjects builds the raw objects of n sample events, perObject rows
// each, through the real decoder and writer, without holding the JSON.
func benchObjects(tb testing.TB, t *schema.Table, n, perObject int) [][]byte {
	r := rand.New(rand.NewPCG(42, 42))
	zipf := rand.NewZipf(r, 1.2, 1, 99_999)
	dec := schema.NewDecoder(t, schema.WithNow(func() time.Time { return testStart.Add(1000 * time.Hour) }))
	var objs [][]byte
	var rec []byte
	for start := 0; start < n; start += perObject {
		b := schema.NewBatch(t, nil)
		for i := start; i < min(n, start+perObject); i++ {
			ts := testStart.Add(time.Duration(i) * time.Millisecond)
			rec = rec[:0]
			rec = append(rec, `{"ts":"`...)
			rec = ts.AppendFormat(rec, "2006-01-02T15:04:05.000000Z")
			rec = append(rec, `","event_id":"`...)
			rec = strconv.AppendUint(rec, r.Uint64(), 16)
			rec = append(rec, `","user_id":"u_`...)
			rec = strconv.AppendUint(rec, 10_000_000+zipf.Uint64()*7919%100_000, 10)
			typ := pickW(benchTypes, benchTypeW, r.IntN(1000))
			rec = append(rec, `","event_type":"`...)
			rec = append(rec, typ...)
			if r.IntN(100) < 2 {
				rec = append(rec, `","country":null`...)
			} else {
				rec = append(rec, `","country":"`...)
				rec = append(rec, pickW(benchCountries, benchCountryW, r.IntN(1000))...)
				rec = append(rec, '"')
			}
			rec = append(rec, `,"device":"mobile","amount":`...)
			amount := 0.0
			if typ == "purchase" {
				amount = float64(int64(math.Exp(math.Log(4000)+0.9*r.NormFloat64()))+99) / 100
			}
			rec = strconv.AppendFloat(rec, amount, 'f', -1, 64)
			rec = append(rec, `,"latency_ms":`...)
			rec = strconv.AppendInt(rec, int64(math.Exp(math.Log(80)+0.8*r.NormFloat64()))+1, 10)
			rec = append(rec, `,"ok":true}`...)
			if _, err := dec.Decode(b, rec, schema.Meta{Source: "kafka:events", Partition: "0", Offset: int64(i)}); err != nil {
				tb.Fatalf("decode %s: %v", rec, err)
			}
		}
		ar := b.NewRecord()
		var buf bytes.Buffer
		if _, err := schema.WriteParquet(&buf, t, ar, nil, schema.WriterOptions{}); err != nil {
			tb.Fatal(err)
		}
		ar.Release()
		objs = append(objs, buf.Bytes())
	}
	return objs
}

// BenchmarkAggregate: 2,000,000 sample events in 16 raw objects into
// 1-minute (and 1-hour) windows by (event_type, country) with count, sum,
// min, max, p99 and distinct users. Reports rows/s and peak RSS.
func BenchmarkAggregate(b *testing.B) {
	t := benchTable(b)
	objs := benchObjects(b, t, 2_000_000, 125_000)
	var total int
	for _, o := range objs {
		total += len(o)
	}
	b.Logf("%d objects, %d MiB", len(objs), total>>20)
	for _, w := range []time.Duration{time.Minute, time.Hour} {
		for _, workers := range []int{1, 2} {
			b.Run(fmt.Sprintf("window=%s/workers=%d", w, workers), func(b *testing.B) {
				var res aggtest.BenchResult
				for b.Loop() {
					var err error
					res, err = aggtest.BenchAggregate(context.Background(), t, w, objs, workers)
					if err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(res.RowsPerSec, "rows/s")
				b.ReportMetric(float64(res.PeakRSSBytes>>20), "peakRSS_MiB")
				b.ReportMetric(float64(res.Groups), "groups")
			})
		}
	}
}
