package httpserver

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// FuzzHandlers sends arbitrary methods, paths, queries and Accept headers
// to every handler the server has: none may panic, and each answer is one a
// client can act on.
func FuzzHandlers(f *testing.F) {
	for _, seed := range []struct{ method, target, accept string }{
		{"GET", "/metrics", ""},
		{"GET", "/healthz", "*/*"},
		{"GET", "/readyz?format=json", "application/json"},
		{"POST", "/readyz", "text/plain"},
		{"GET", "/metrics?x=%zz", "application/openmetrics-text; version=1.0.0"},
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
		s.mux.ServeHTTP(rec, req)
		if rec.Code < 200 || rec.Code >= 600 {
			t.Fatalf("%s %q: status %d", method, target, rec.Code)
		}
		_, _ = io.Copy(io.Discard, rec.Body)
	})
}
