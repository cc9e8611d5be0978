package httpserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// FuzzHandlers sends arbitrary methods, paths, queries and Accept headers
// to every handler the server has: none may panic, each must write a
// status itself, and the status must be the one the request deserves:
// 200 for GET or HEAD of /metrics and /healthz, 503 for /readyz (one of
// its checks fails), 405 with an Allow header for another method on those
// paths, 307 to the cleaned path for an unclean one, 404 for the rest.
func FuzzHandlers(f *testing.F) {
	for _, seed := range []struct{ method, target, accept string }{
		{"GET", "/metrics", ""},
		{"HEAD", "/metrics", "text/plain"},
		{"GET", "/healthz", "*/*"},
		{"GET", "/readyz?format=json", "application/json"},
		{"POST", "/readyz", "text/plain"},
		{"get", "/healthz", ""},
		{"CONNECT", "/healthz/../metrics", ""},
		{"GET", "/metrics?x=%zz", "application/openmetrics-text; version=1.0.0"},
		{"GET", "/%6Detrics", ""},
		{"GET", "/metrics%2F", ""},
		{"GET", "//healthz/./", ""},
		{"DELETE", "/../../etc/passwd", ""},
		{"GET", "/readyz?format=" + strings.Repeat("j", 5000), "\x00"},
	} {
		f.Add(seed.method, seed.target, seed.accept)
	}
	reg := prometheus.NewRegistry()
	if err := RegisterRuntimeCollectors(reg); err != nil {
		f.Fatal(err)
	}
	s := New("127.0.0.1:0", reg, slog.New(slog.DiscardHandler))
	s.AddReadiness("store", func(context.Context) error { return errors.New("store unreachable") })
	s.AddReadiness("ok", func(context.Context) error { return nil })
	f.Fuzz(func(t *testing.T, method, target, accept string) {
		if !strings.HasPrefix(target, "/") {
			target = "/" + target
		}
		req, err := http.NewRequest(method, "http://127.0.0.1"+target, nil)
		if err != nil {
			return // not a request a client could send
		}
		req.Header.Set("Accept", accept)
		rec := httptest.NewRecorder()
		rec.Code = 0 // the recorder's default of 200 would hide a handler that writes nothing
		s.mux.ServeHTTP(rec, req)
		want, location := expectedStatus(req)
		if rec.Code != want {
			t.Fatalf("%s %q (path %q): status %d, want %d", req.Method, target, req.URL.EscapedPath(), rec.Code, want)
		}
		switch want {
		case http.StatusTemporaryRedirect:
			if got := rec.Header().Get("Location"); got != location {
				t.Fatalf("%s %q: redirect to %q, want %q", req.Method, target, got, location)
			}
		case http.StatusMethodNotAllowed:
			if allow := rec.Header().Get("Allow"); !strings.Contains(allow, "GET") {
				t.Fatalf("%s %q: 405 with Allow %q", req.Method, target, allow)
			}
		case http.StatusOK, http.StatusServiceUnavailable:
			if rec.Header().Get("Content-Type") == "" {
				t.Fatalf("%s %q: %d without a Content-Type", req.Method, target, rec.Code)
			}
		}
		if _, err := io.Copy(io.Discard, rec.Body); err != nil {
			t.Fatal(err)
		}
	})
}

// expectedStatus is what the server's mux must answer to req, worked out
// from the routing rules rather than by asking the mux: unclean paths
// redirect (except for CONNECT), then a path is matched segment by
// segment, each unescaped.
func expectedStatus(req *http.Request) (code int, location string) {
	escaped := req.URL.EscapedPath()
	if req.Method != http.MethodConnect {
		clean := path.Clean(escaped)
		if escaped == "" {
			clean = "/"
		} else if strings.HasSuffix(escaped, "/") && clean != "/" {
			clean += "/"
		}
		if clean != escaped {
			u := url.URL{Path: clean, RawQuery: req.URL.RawQuery}
			return http.StatusTemporaryRedirect, hexEscapeNonASCII(u.String())
		}
	}
	segs := strings.Split(strings.TrimPrefix(escaped, "/"), "/")
	var name string
	if len(segs) == 1 {
		if n, err := url.PathUnescape(segs[0]); err == nil {
			name = n
		}
	}
	switch name {
	case "metrics", "healthz", "readyz":
	default:
		return http.StatusNotFound, ""
	}
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		return http.StatusMethodNotAllowed, ""
	}
	if name == "readyz" {
		return http.StatusServiceUnavailable, "" // the "store" check fails
	}
	return http.StatusOK, ""
}

// hexEscapeNonASCII escapes the bytes a Location header may not carry raw,
// as net/http's redirect does: every byte past ASCII becomes %XX.
func hexEscapeNonASCII(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 0x80 {
			fmt.Fprintf(&b, "%%%02x", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}
