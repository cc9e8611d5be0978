package web_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/ingest"
	"github.com/sluicehq/sluice/internal/httpserver"
	"github.com/sluicehq/sluice/objstore/objstoretest"
	"github.com/sluicehq/sluice/web"
	"github.com/sluicehq/sluice/web/auth"
)

// startHardened serves the web tier on the binary's own listener
// (httpserver: header limit, read/write/idle timeouts), as `sluice serve`
// does, and returns its address and an admin key.
func startHardened(t *testing.T) (string, string) {
	t.Helper()
	b := objstoretest.NewLocal(t)
	ctx, cancel := context.WithCancel(context.Background())
	reg := prometheus.NewRegistry()
	logger := slog.New(slog.DiscardHandler)
	ws, err := web.New(ctx, web.Config{FlushInterval: 20 * time.Millisecond}, httpTables(t), b, logger, reg, ingest.NewMetrics(reg))
	if err != nil {
		t.Fatal(err)
	}
	ws.SetSummaries(objstoretest.NewLocal(t))
	srv := httpserver.New("127.0.0.1:0", reg, logger)
	ws.Mount(srv)
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}, 2)
	go func() { _ = srv.Run(ctx); done <- struct{}{} }()
	go func() { _ = ws.Run(ctx); done <- struct{}{} }()
	t.Cleanup(func() { cancel(); <-done; <-done })
	ks, err := auth.NewKeyStore(b)
	if err != nil {
		t.Fatal(err)
	}
	_, key, err := ks.Create(ctx, "hostile", auth.Scopes{"admin"}, 10_000, 10_000)
	if err != nil {
		t.Fatal(err)
	}
	return srv.Addr(), key
}

// A corpus of hostile requests: each gets a clear 4xx (never a 5xx, never
// a hang) and the server stays up.
func TestHostileRequests(t *testing.T) {
	addr, key := startHardened(t)
	base := "http://" + addr
	var bomb bytes.Buffer
	zw := gzip.NewWriter(&bomb)
	zw.Write(bytes.Repeat([]byte{'{'}, 6<<20)) // over the 4 MiB default once unzipped
	zw.Close()
	deep := strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000)
	cases := []struct {
		name   string
		method string
		path   string
		body   []byte
		hdr    map[string]string
		want   int
	}{
		{"huge header", "GET", "/v1/tables", nil, map[string]string{"X-Junk": strings.Repeat("a", 200<<10)}, 431},
		{"huge bearer", "GET", "/v1/tables", nil, map[string]string{"Authorization": "Bearer st_" + strings.Repeat("A", 8000) + ".x"}, 401},
		{"gzip bomb", "POST", "/v1/tables/events/events", bomb.Bytes(), map[string]string{"Content-Encoding": "gzip"}, 413},
		{"bad gzip", "POST", "/v1/tables/events/events", []byte("not gzip at all"), map[string]string{"Content-Encoding": "gzip"}, 400},
		{"deep JSON array", "POST", "/v1/tables/events/events", []byte(deep), nil, 400},
		{"body over the limit", "POST", "/v1/tables/events/events", bytes.Repeat([]byte("{}\n"), 2<<20), nil, 413},
		{"table with a slash", "POST", "/v1/tables/a%2Fb/events", []byte("{}"), nil, 404},
		{"NUL in table", "POST", "/v1/tables/a%00b/events", []byte("{}"), nil, 404},
		{"query with 1,000 groups", "GET", "/v1/query?table=events&window=1h&from=2026-01-01&to=2026-01-02&group_by=" + strings.Repeat("country,", 1000), nil, nil, 400},
		{"URL of 100 KiB", "GET", "/v1/query?table=events&group_by=" + strings.Repeat("country,", 13_000), nil, nil, 431},
		{"deep JSON query body", "POST", "/v1/query", []byte(`{"table":` + strings.Repeat("[", 20_000) + strings.Repeat("]", 20_000) + `}`), nil, 400},
		{"query body over 64 KiB", "POST", "/v1/query", bytes.Repeat([]byte(" "), 100<<10), nil, 413},
		{"a century of minutes", "GET", "/v1/query?table=events&window=1m&from=1990-01-01&to=2090-01-01", nil, nil, 400},
		{"token mint with junk", "POST", "/v1/tokens", []byte(`{"scopes":["read:events"],"x":1}`), nil, 400},
	}
	for _, c := range cases {
		req, _ := http.NewRequest(c.method, base+c.path, bytes.NewReader(c.body))
		if c.hdr["Authorization"] == "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		for k, v := range c.hdr {
			req.Header.Set(k, v)
		}
		res, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != c.want {
			t.Errorf("%s: %d %.200s, want %d", c.name, res.StatusCode, body, c.want)
		}
	}
	res, err := http.Get(base + "/healthz")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("server down after the corpus: %v", err)
	}
	res.Body.Close()
}

// A body sent slower than the read timeout is cut off: the connection
// does not stay open (behind SLUICE_FAULTS: it takes the 30 s timeout).
func TestFaultsSlowBodyIsCutOff(t *testing.T) {
	if os.Getenv("SLUICE_FAULTS") != "1" {
		t.Skip("fault scenario: set SLUICE_FAULTS=1")
	}
	addr, key := startHardened(t)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, _ = io.WriteString(conn, "POST /v1/tables/events/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+key+"\r\nContent-Length: 1000000\r\n\r\n{")
	start := time.Now()
	_ = conn.SetReadDeadline(time.Now().Add(45 * time.Second))
	buf := make([]byte, 4096)
	for {
		_, _ = conn.Write([]byte(" ")) // a byte now and then, never the whole body
		_, err := conn.Read(buf)
		if err != nil {
			break
		}
		time.Sleep(time.Second)
	}
	if el := time.Since(start); el > 40*time.Second {
		t.Fatalf("a slow body held the connection for %s", el)
	}
}
