package web_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/aggregate"
	"github.com/sluicehq/sluice/objstore/objstoretest"
	"github.com/sluicehq/sluice/web"
)

// benchEvents returns n JSON lines of the sample table, one every step
// from start, over 3 event types and 4 countries.
func benchEvents(prefix string, start time.Time, step time.Duration, n int) []byte {
	var b bytes.Buffer
	types := []string{"click", "view", "buy"}
	countries := []string{`"DE"`, `"FR"`, `"US"`, `null`}
	for i := range n {
		fmt.Fprintf(&b, `{"ts":%q,"event_id":"%s-%d","user_id":"u%d","event_type":%q,"country":%s,"amount":%d.25,"latency_ms":%d,"ok":true}`+"\n",
			start.Add(time.Duration(i)*step).UTC().Format(time.RFC3339Nano), prefix, i, i%5000, types[i%3], countries[i%4], i%1000, 1+i%900)
	}
	return b.Bytes()
}

func post(b *testing.B, client *http.Client, url, key string, body []byte) time.Duration {
	req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	start := time.Now()
	res, err := client.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != 200 {
		b.Fatalf("status %d", res.StatusCode)
	}
	return time.Since(start)
}

func quantile(d []time.Duration, q float64) time.Duration {
	slices.Sort(d)
	return d[int(q*float64(len(d)-1))]
}

// BenchmarkHTTPIngest: 4 clients post JSON lines, 1,000 events per
// request, each waiting for its 200 (records committed to the lake, a
// local directory) before the next; the flush interval is the default
// 200 ms. Reports events/s and request latency.
func BenchmarkHTTPIngest(b *testing.B) {
	ts := startServer(b, objstoretest.NewLocal(b), web.Config{FlushInterval: web.DefaultFlushInterval}, nil)
	key := ts.newKey(b, 1e6, 1e6, "append:events")
	url := ts.URL + "/v1/tables/events/events"
	bodies := make([][]byte, 64)
	for i := range bodies {
		bodies[i] = benchEvents(fmt.Sprintf("b%d", i), time.Now().Add(-time.Hour), time.Millisecond, 1000)
	}
	var next atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{}
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				d := post(b, client, url, key, bodies[i%int64(len(bodies))])
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	b.ReportMetric(float64(b.N)*1000/el.Seconds(), "events/s")
	b.ReportMetric(float64(quantile(lat, 0.5).Milliseconds()), "p50-ms")
	b.ReportMetric(float64(quantile(lat, 0.99).Milliseconds()), "p99-ms")
}

// BenchmarkQueryDay1m: a day of 1-minute windows (43,200 events, 2 s
// apart, all 1,440 windows filled, 12 groups each) ingested over HTTP and
// summarised by the aggregator; then the day is queried at 1m, ungrouped
// and grouped by both dimensions, as JSON. Reports p50 and p99 latency.
func BenchmarkQueryDay1m(b *testing.B) {
	raw, sums := memLocal(b), memLocal(b) // reads come from the page cache either way
	ts := startServer(b, raw, web.Config{}, func(s *web.Server) { s.SetSummaries(sums) })
	cold := startServer(b, raw, web.Config{QueryCacheUnits: -1, Instance: "cold"}, func(s *web.Server) { s.SetSummaries(sums) })
	appender := ts.newKey(b, 1e6, 1e6, "append:events")
	reader := ts.newKey(b, 1e6, 1e6, "read:events")
	day := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -2)
	client := &http.Client{}
	for i := 0; i < 43; i++ {
		post(b, client, ts.URL+"/v1/tables/events/events", appender, benchEvents(fmt.Sprintf("d%d", i), day.Add(time.Duration(i)*1000*2*time.Second), 2*time.Second, 1000))
	}
	post(b, client, ts.URL+"/v1/tables/events/events", appender, benchEvents("tail", day.Add(86_000*time.Second), 2*time.Second, 200))
	post(b, client, ts.URL+"/v1/tables/events/events", appender, benchEvents("now", time.Now().Add(-time.Minute), time.Second, 1))
	svc, err := aggregate.NewService(aggregate.Config{}, raw, sums, httpTables(b), "bench", slog.New(slog.DiscardHandler), nil)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := svc.RunOnce(context.Background(), httpTables(b)[0]); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name, params string
		srv          *testServer
	}{
		{"cold/ungrouped", "", cold},
		{"cold/grouped", "&group_by=event_type,country", cold},
		{"cached/ungrouped", "", ts},
		{"cached/grouped", "&group_by=event_type,country", ts},
	} {
		b.Run(c.name, func(b *testing.B) {
			url := c.srv.URL + "/v1/query?table=events&window=1m&from=" + day.Format(time.RFC3339) + "&to=" + day.Add(24*time.Hour).Format(time.RFC3339) + c.params
			lat := make([]time.Duration, 0, b.N)
			var rows int
			b.ResetTimer()
			for range b.N {
				req, _ := http.NewRequest("GET", url, nil)
				req.Header.Set("Authorization", "Bearer "+reader)
				start := time.Now()
				res, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				n, _ := io.Copy(io.Discard, res.Body)
				res.Body.Close()
				lat = append(lat, time.Since(start))
				if res.StatusCode != 200 {
					b.Fatalf("status %d", res.StatusCode)
				}
				rows = int(n)
			}
			b.ReportMetric(float64(quantile(lat, 0.5).Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(quantile(lat, 0.99).Microseconds())/1000, "p99-ms")
			b.ReportMetric(float64(rows), "bytes")
		})
	}
}
