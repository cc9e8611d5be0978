package httpin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/ingest"
	"github.com/sluicehq/sluice/ingest/httpin"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/schema"
)

// httpTable is the sample table fed by HTTP instead of Kafka.
func httpTable(t testing.TB) *schema.Table {
	t.Helper()
	y := strings.Replace(string(schema.SampleYAML), "topic: events", "http: {}", 1)
	tables, err := schema.Parse([]byte(y), "events.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return tables[0]
}

// stack is one running HTTP ingest server over a bucket: writer,
// pipeline, source and handler, as `sluice serve` wires them.
type stack struct {
	URL  string
	stop func()
}

func startStack(t testing.TB, b objstore.Bucket, cfg httpin.Config) *stack {
	t.Helper()
	url, stop, err := runStack(b, cfg, httpTable(t))
	if err != nil {
		t.Fatal(err)
	}
	s := &stack{URL: url, stop: stop}
	t.Cleanup(func() {
		if s.stop != nil {
			s.stop()
			s.stop = nil
		}
	})
	return s
}

// runStack starts a server on a free loopback port and returns its URL and
// a function that drains and stops it.
func runStack(b objstore.Bucket, cfg httpin.Config, table *schema.Table) (string, func(), error) {
	ctx, cancel := context.WithCancel(context.Background())
	logger := slog.New(slog.DiscardHandler)
	reg := prometheus.NewRegistry()
	w, err := ingest.NewWriter(ingest.WriterConfig{FlushInterval: 20 * time.Millisecond, Workers: 1}, b, logger, ingest.NewMetrics(reg))
	if err != nil {
		cancel()
		return "", nil, err
	}
	src, err := httpin.NewSource([]*schema.Table{table}, "test", logger)
	if err != nil {
		cancel()
		return "", nil, err
	}
	pipe := ingest.NewPipeline(w, src, logger)
	pipe.Start()
	if err := src.Open(ctx, pipe); err != nil {
		cancel()
		return "", nil, err
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = src.Run(ctx) }()
	h, err := httpin.NewHandler(cfg, src, b, w.CommitLog(), logger, httpin.NewMetrics(reg))
	if err != nil {
		cancel()
		return "", nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("POST /v1/tables/{table}/events", h)
	srv := httptest.NewServer(mux)
	stop := func() {
		srv.Close()
		dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
		pipe.Drain(dctx)
		dcancel()
		cancel()
		<-done
		pipe.Close()
		w.Close()
	}
	return srv.URL, stop, nil
}

// post sends body and decodes the answer.
func post(t testing.TB, url string, body []byte, hdr map[string]string) (int, httpin.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var r httpin.Response
	_ = json.Unmarshal(raw, &r)
	return res.StatusCode, r, string(raw)
}

func event(id string, ts time.Time) string {
	return fmt.Sprintf(`{"ts":%q,"event_id":%q,"user_id":"u1","event_type":"click","country":"DE","amount":1.5,"latency_ms":7,"ok":true}`,
		ts.UTC().Format(time.RFC3339Nano), id)
}

// committedIDs counts each event id in the committed raw objects, read
// with parquet-go straight from the bucket: the verifier trusts the commit
// records and the Parquet bytes, not the server's answers.
func committedIDs(t testing.TB, b objstore.Bucket) map[string]int {
	t.Helper()
	ctx := context.Background()
	recs, err := lake.NewCommitLog(b).Records(ctx, "events")
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		EventID string `parquet:"event_id"`
	}
	out := map[string]int{}
	for _, rec := range recs {
		for _, obj := range rec.Objects {
			if obj.Kind != lake.KindRaw {
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
			if err := lake.CheckObject(obj, data); err != nil {
				t.Fatal(err)
			}
			rows, err := parquet.Read[row](bytes.NewReader(data), int64(len(data)))
			if err != nil {
				t.Fatalf("read %s: %v", obj.Key, err)
			}
			for _, r := range rows {
				out[r.EventID]++
			}
		}
	}
	return out
}

// checkExactlyOnce fails unless every id in want is committed once and
// nothing else is.
func checkExactlyOnce(t testing.TB, want map[string]bool, got map[string]int) {
	t.Helper()
	var lost, dup, extra []string
	for id := range want {
		switch n := got[id]; {
		case n == 0:
			lost = append(lost, id)
		case n > 1:
			dup = append(dup, id)
		}
	}
	for id := range got {
		if !want[id] {
			extra = append(extra, id)
		}
	}
	if len(lost)+len(dup)+len(extra) > 0 {
		t.Fatalf("exactly-once violated: %d lost (e.g. %q), %d duplicated (e.g. %q), %d never acknowledged (e.g. %q)",
			len(lost), lost[:min(3, len(lost))], len(dup), dup[:min(3, len(dup))], len(extra), extra[:min(3, len(extra))])
	}
}

// newBareHandler is a handler with no pipeline behind it, for what does
// not queue records.
func newBareHandler(t *testing.T, b objstore.Bucket, cfg httpin.Config) *httpin.Handler {
	t.Helper()
	src, err := httpin.NewSource([]*schema.Table{httpTable(t)}, "test", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	h, err := httpin.NewHandler(cfg, src, b, lake.NewCommitLog(b), slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	return h
}
