package httpserver

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func testLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// startServer runs a server on a free loopback port and stops it when the
// test ends, failing the test if Run returned an error.
func startServer(t *testing.T, reg *prometheus.Registry, setup func(*Server)) *Server {
	t.Helper()
	s := New("127.0.0.1:0", reg, testLogger())
	if setup != nil {
		setup(s)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	return s
}

func get(t *testing.T, url string, header map[string]string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b), resp.Header
}

func TestMetricsAndHealth(t *testing.T) {
	reg := prometheus.NewRegistry()
	if err := RegisterRuntimeCollectors(reg); err != nil {
		t.Fatal(err)
	}
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_test_things_total", Help: "things"})
	reg.MustRegister(c)
	c.Add(3)
	s := startServer(t, reg, nil)
	if strings.HasSuffix(s.Addr(), ":0") {
		t.Fatalf("Addr %q does not carry the bound port", s.Addr())
	}
	base := "http://" + s.Addr()

	tests := []struct {
		name     string
		path     string
		wantCode int
		wantBody []string
	}{
		{name: "metrics has registered counter", path: "/metrics", wantCode: 200, wantBody: []string{"sluice_test_things_total 3"}},
		{name: "metrics has runtime collectors", path: "/metrics", wantCode: 200, wantBody: []string{"go_goroutines", "process_cpu_seconds_total"}},
		{name: "healthz", path: "/healthz", wantCode: 200, wantBody: []string{"ok"}},
		{name: "readyz without checks", path: "/readyz", wantCode: 200, wantBody: []string{"ready"}},
		{name: "unknown path", path: "/nope", wantCode: 404},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body, _ := get(t, base+tc.path, nil)
			if code != tc.wantCode {
				t.Fatalf("status %d, want %d; body %q", code, tc.wantCode, body)
			}
			for _, w := range tc.wantBody {
				if !strings.Contains(body, w) {
					t.Errorf("body does not contain %q", w)
				}
			}
		})
	}
}

func TestRegisterRuntimeCollectorsTwiceFails(t *testing.T) {
	reg := prometheus.NewRegistry()
	if err := RegisterRuntimeCollectors(reg); err != nil {
		t.Fatal(err)
	}
	if err := RegisterRuntimeCollectors(reg); err == nil {
		t.Fatal("second registration succeeded; want an already-registered error")
	}
}

func TestReadiness(t *testing.T) {
	ok := func(context.Context) error { return nil }
	fail := func(context.Context) error { return errors.New("broker unreachable") }
	hang := func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
	boom := func(context.Context) error { panic("bad check") }

	tests := []struct {
		name        string
		checks      map[string]func(context.Context) error
		wantCode    int
		wantFailing []string
	}{
		{name: "all pass", checks: map[string]func(context.Context) error{"a": ok, "b": ok}, wantCode: 200},
		{name: "one fails", checks: map[string]func(context.Context) error{"kafka": fail, "bucket": ok}, wantCode: 503, wantFailing: []string{"kafka"}},
		{name: "two fail", checks: map[string]func(context.Context) error{"kafka": fail, "bucket": fail, "x": ok}, wantCode: 503, wantFailing: []string{"bucket", "kafka"}},
		{name: "hanging check times out", checks: map[string]func(context.Context) error{"slow": hang, "a": ok}, wantCode: 503, wantFailing: []string{"slow"}},
		{name: "panicking check fails, server lives", checks: map[string]func(context.Context) error{"p": boom}, wantCode: 503, wantFailing: []string{"p"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, prometheus.NewRegistry(), func(s *Server) {
				s.readinessTimeout = 200 * time.Millisecond
				for n, c := range tc.checks {
					s.AddReadiness(n, c)
				}
			})
			base := "http://" + s.Addr()

			code, body, hdr := get(t, base+"/readyz", map[string]string{"Accept": "application/json"})
			if code != tc.wantCode {
				t.Fatalf("status %d, want %d; body %q", code, tc.wantCode, body)
			}
			if ct := hdr.Get("Content-Type"); ct != "application/json" {
				t.Fatalf("content type %q", ct)
			}
			var res readiness
			if err := json.Unmarshal([]byte(body), &res); err != nil {
				t.Fatalf("decode %q: %v", body, err)
			}
			if len(res.Failing) != len(tc.wantFailing) {
				t.Fatalf("failing %v, want %v", res.Failing, tc.wantFailing)
			}
			for _, n := range tc.wantFailing {
				if res.Failing[n] == "" {
					t.Errorf("check %q not reported with a reason: %v", n, res.Failing)
				}
			}

			code, body, _ = get(t, base+"/readyz", nil)
			if code != tc.wantCode {
				t.Fatalf("text: status %d, want %d", code, tc.wantCode)
			}
			for _, n := range tc.wantFailing {
				if !strings.Contains(body, n+": ") {
					t.Errorf("text body %q does not name %q", body, n)
				}
			}
			// Liveness is independent of readiness.
			if code, _, _ := get(t, base+"/healthz", nil); code != 200 {
				t.Errorf("healthz %d", code)
			}
		})
	}
}

func TestReadinessChangesOverTime(t *testing.T) {
	var ready = make(chan struct{})
	s := startServer(t, prometheus.NewRegistry(), func(s *Server) {
		s.AddReadiness("loaded", func(context.Context) error {
			select {
			case <-ready:
				return nil
			default:
				return errors.New("still loading")
			}
		})
	})
	url := "http://" + s.Addr() + "/readyz"
	if code, _, _ := get(t, url, nil); code != 503 {
		t.Fatalf("before: %d, want 503", code)
	}
	close(ready)
	if code, _, _ := get(t, url, nil); code != 200 {
		t.Fatalf("after: %d, want 200", code)
	}
}

func TestHandleAfterStart(t *testing.T) {
	s := startServer(t, prometheus.NewRegistry(), nil)
	s.Handle("GET /api/hello", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("hi"))
	}))
	code, body, _ := get(t, "http://"+s.Addr()+"/api/hello", nil)
	if code != 200 || body != "hi" {
		t.Fatalf("got %d %q", code, body)
	}
}

// A client that sends headers forever must be cut off by ReadHeaderTimeout;
// here we only check the header size limit, which needs no waiting: a
// header under the server's limit is served, one twice the limit (still far
// under net/http's default of 1 MiB, so the server's own limit is what
// refuses it) gets 431 Request Header Fields Too Large.
func TestOversizedHeaderRejected(t *testing.T) {
	s := startServer(t, prometheus.NewRegistry(), nil)
	for _, tc := range []struct {
		name   string
		size   int
		status int
	}{
		{"under the limit", maxHeaderBytes / 2, http.StatusOK},
		{"twice the limit", 2 * maxHeaderBytes, http.StatusRequestHeaderFieldsTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := rawGetWithHeader(t, s.Addr(), tc.size); got != tc.status {
				t.Fatalf("%d-byte header: status %d, want %d", tc.size, got, tc.status)
			}
		})
	}
}

// rawGetWithHeader sends GET /healthz with an X-Big header of size bytes
// over a plain connection and returns the status of the answer. The
// request is written while the answer is read: the server may answer and
// stop reading before the request is all sent.
func rawGetWithHeader(t *testing.T, addr string, size int) int {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	req := "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: " + strings.Repeat("a", size) + "\r\n\r\n"
	wrote := make(chan error, 1)
	go func() {
		_, err := io.WriteString(conn, req)
		wrote <- err
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a %d-byte header: %v (write: %v)", size, err, <-wrote)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Fatal(err)
	}
	// A refused request may be cut off mid-write; a served one is written whole.
	if err := <-wrote; err != nil && resp.StatusCode == http.StatusOK {
		t.Fatalf("served, yet writing the request failed: %v", err)
	}
	return resp.StatusCode
}

func TestRunShutsDownOnCancel(t *testing.T) {
	s := New("127.0.0.1:0", prometheus.NewRegistry(), testLogger())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	// Wait until it serves.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if a := s.Addr(); !strings.HasSuffix(a, ":0") {
			if c, err := net.Dial("tcp", a); err == nil {
				c.Close()
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("server never listened")
		}
		time.Sleep(10 * time.Millisecond)
	}
	addr := s.Addr()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return")
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatal("still accepting connections after shutdown")
	}
}

func TestListenErrorIsReturned(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s := New(ln.Addr().String(), prometheus.NewRegistry(), testLogger())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Run(ctx); err == nil {
		t.Fatal("Run on a taken port returned nil")
	}
}
