package httpin

import (
	"bytes"
	"compress/gzip"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/objstore/objstoretest"
	"github.com/sluicehq/sluice/schema"
)

// FuzzIngestBody runs arbitrary bodies, plain or marked gzip, through what
// a request goes through before its records are queued: the size limits,
// gzip, splitting into records and the table's decoder. It must never
// panic; every record gets exactly one result with a known reason.
func FuzzIngestBody(f *testing.F) {
	y := strings.Replace(string(schema.SampleYAML), "topic: events", "http: {}", 1)
	tables, err := schema.Parse([]byte(y), "events.yaml")
	if err != nil {
		f.Fatal(err)
	}
	src, err := NewSource(tables, "fuzz", slog.New(slog.DiscardHandler))
	if err != nil {
		f.Fatal(err)
	}
	h, err := NewHandler(Config{MaxBodyBytes: 64 << 10, MaxRecords: 100}, src, objstoretest.NewLocal(f), nil, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		f.Fatal(err)
	}
	reasons := map[string]bool{"undecodable": true}
	for _, r := range schema.Reasons() {
		reasons[string(r)] = true
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(`{"ts":"2026-01-01T00:00:00Z","event_id":"a","user_id":"u","event_type":"e","amount":1,"latency_ms":1,"ok":true}`))
	zw.Close()
	for _, seed := range []struct {
		body []byte
		gz   bool
	}{
		{[]byte(`{"ts":"2026-01-01T00:00:00Z","event_id":"a","user_id":"u","event_type":"e","amount":1,"latency_ms":1,"ok":true}`), false},
		{[]byte("[{\"a\":1},\n{\"b\":[1,2]}]"), false},
		{[]byte("{\"a\":1}\n{bad\n\n[1]\n\"s\"\n"), false},
		{[]byte(strings.Repeat("[", 5000)), false},
		{[]byte("[" + strings.Repeat("{\"a\":", 100) + "1" + strings.Repeat("}", 100) + "]"), false},
		{gz.Bytes(), true},
		{gz.Bytes()[:10], true},
		{[]byte("\xff\xfe{}"), false},
	} {
		f.Add(seed.body, seed.gz)
	}
	f.Fuzz(func(t *testing.T, body []byte, gzipped bool) {
		r := httptest.NewRequest(http.MethodPost, "/v1/tables/events/events", bytes.NewReader(body))
		if gzipped {
			r.Header.Set("Content-Encoding", "gzip")
		}
		w := httptest.NewRecorder()
		data, code, err := readBody(r, w, h.cfg.MaxBodyBytes)
		if err != nil {
			if code < 400 || code > 499 {
				t.Fatalf("body error %v with status %d", err, code)
			}
			return
		}
		values, err := SplitRecords(data, h.cfg.MaxRecords)
		if err != nil {
			return
		}
		if len(values) == 0 || len(values) > h.cfg.MaxRecords {
			t.Fatalf("%d records", len(values))
		}
		resp, accepted := h.decode("events", values)
		if resp.Received != len(values) || resp.Accepted+resp.Refused != len(values) || len(accepted) != resp.Accepted || len(resp.Results) != len(values) {
			t.Fatalf("counts: %+v for %d records", resp, len(values))
		}
		for _, res := range resp.Results {
			if res.Status == "refused" && !reasons[res.Reason] {
				t.Fatalf("unknown reason %q", res.Reason)
			}
		}
		if slices.ContainsFunc(values, func(v []byte) bool { return len(bytes.TrimSpace(v)) == 0 }) {
			t.Fatal("an empty record")
		}
	})
}
