package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/objstore/objstoretest"
	"github.com/sluicehq/sluice/schema"
	"github.com/sluicehq/sluice/web"
	"github.com/sluicehq/sluice/web/auth"
)

func httpTables(t testing.TB) []*schema.Table {
	t.Helper()
	y := strings.Replace(string(schema.SampleYAML), "topic: events", "http: {}", 1)
	tables, err := schema.Parse([]byte(y), "events.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return tables
}

type testServer struct {
	URL  string
	B    objstore.Bucket
	Keys *auth.KeyStore
	Web  *web.Server
}

func startServer(t testing.TB, b objstore.Bucket, cfg web.Config, mount func(*web.Server)) *testServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	if cfg.FlushInterval == 0 {
		cfg.FlushInterval = 20 * time.Millisecond
	}
	s, err := web.New(ctx, cfg, httpTables(t), b, slog.New(slog.DiscardHandler), prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if mount != nil {
		mount(s)
	}
	mux := http.NewServeMux()
	s.Mount(mux)
	srv := httptest.NewServer(mux)
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx) }()
	t.Cleanup(func() { srv.Close(); cancel(); <-done })
	keys, err := auth.NewKeyStore(b)
	if err != nil {
		t.Fatal(err)
	}
	return &testServer{URL: srv.URL, B: b, Keys: keys, Web: s}
}

func (ts *testServer) newKey(t testing.TB, rate float64, burst int, scopes ...auth.Scope) string {
	t.Helper()
	_, secret, err := ts.Keys.Create(context.Background(), "test", scopes, rate, burst)
	if err != nil {
		t.Fatal(err)
	}
	return secret
}

func do(t testing.TB, method, url, cred string, body []byte) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if cred != "" {
		req.Header.Set("Authorization", "Bearer "+cred)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	return res.StatusCode, res.Header, raw
}

func mintToken(t testing.TB, url, key string, body string) string {
	t.Helper()
	code, _, raw := do(t, "POST", url+"/v1/tokens", key, []byte(body))
	if code != 200 {
		t.Fatalf("mint token: %d %s", code, raw)
	}
	var out struct{ Token string }
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	return out.Token
}

func event(id string) string {
	return fmt.Sprintf(`{"ts":%q,"event_id":%q,"user_id":"u1","event_type":"click","country":"DE","amount":1.5,"latency_ms":7,"ok":true}`,
		time.Now().Add(-time.Minute).UTC().Format(time.RFC3339Nano), id)
}

func newTestHTTPServer(t testing.TB, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

// memLocal is a local bucket on a RAM disk (/dev/shm) when there is one:
// the store fsyncs every object, which on a busy shared disk dominates a
// fixture that writes hundreds of summary objects. Durability is not what
// these tests check; the local store's own tests do.
func memLocal(t testing.TB) *objstore.Local {
	t.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "sluice-web-test-")
	if err != nil {
		return objstoretest.NewLocal(t)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	b, err := objstore.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }
