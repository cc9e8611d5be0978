package httpserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// DefaultAddr is where the server listens unless told otherwise: loopback
// only, because metrics and probes are not meant for the open network.
const DefaultAddr = "127.0.0.1:8080"

// Limits that keep slow or hostile clients from holding connections or
// memory. WriteTimeout is generous because a large /metrics scrape or a
// query answer may take a while to stream.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 30 * time.Second
	writeTimeout      = 60 * time.Second
	idleTimeout       = 120 * time.Second
	maxHeaderBytes    = 64 << 10
	shutdownTimeout   = 10 * time.Second
	// defaultReadinessTimeout bounds one /readyz evaluation; a check that
	// hangs is reported as failing rather than hanging the probe.
	defaultReadinessTimeout = 5 * time.Second
)

// Server serves /metrics, /healthz, /readyz and any handler added with Handle.
type Server struct {
	addr   string
	logger *slog.Logger
	mux    *http.ServeMux
	srv    *http.Server

	readinessTimeout time.Duration

	mu     sync.Mutex
	checks map[string]func(context.Context) error
	ln     net.Listener
}

// New returns a server that will listen on addr (host:port; port 0 picks a
// free one) and serve the metrics gathered from reg. It does not listen
// until Listen or Run is called.
func New(addr string, reg prometheus.Gatherer, logger *slog.Logger) *Server {
	if addr == "" {
		addr = DefaultAddr
	}
	s := &Server{
		addr:   addr,
		logger: logger,
		mux:    http.NewServeMux(),
		checks: make(map[string]func(context.Context) error),

		readinessTimeout: defaultReadinessTimeout,
	}
	s.srv = &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog: promLogger{logger},
		// Serve what could be gathered rather than nothing when one
		// collector fails; the failure is logged.
		ErrorHandling: promhttp.ContinueOnError,
		// Scrapes are cheap but not free; a flood of them must not pile up.
		MaxRequestsInFlight: 4,
		Timeout:             writeTimeout / 2,
	}))
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	s.mux.HandleFunc("GET /readyz", s.serveReadyz)
	return s
}

// AddReadiness registers a check that /readyz runs on every request. The
// process is ready only when every check returns nil. A check should be
// cheap and honour ctx; one that outlives the probe's deadline counts as
// failing. Registering a name again replaces its check.
func (s *Server) AddReadiness(name string, check func(context.Context) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checks[name] = check
}

// Handle mounts h at pattern (http.ServeMux syntax, e.g. "GET /api/"). It may
// be called before or after Run. Like http.ServeMux it panics when pattern
// conflicts with one already registered: that is a programming error.
func (s *Server) Handle(pattern string, h http.Handler) {
	s.mux.Handle(pattern, h)
}

// Listen binds the address without serving yet, so that Addr is known before
// Run starts. Run calls it if it was not called.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return nil
	}
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.addr, err)
	}
	s.ln = ln
	return nil
}

// Addr is the address the server listens on: the actual one (with the real
// port when configured with :0) once Listen or Run has bound it, the
// configured one before.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return s.ln.Addr().String()
	}
	return s.addr
}

// Run serves until ctx is done, then shuts down gracefully: in-flight
// requests get up to 10 seconds to finish before connections are closed. It
// returns nil after a shutdown caused by ctx, or the error that stopped it.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	s.mu.Lock()
	ln := s.ln
	s.mu.Unlock()
	s.logger.Info("http server listening", "addr", ln.Addr().String())

	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(ln) }()

	select {
	case err := <-errc:
		return fmt.Errorf("serve http on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	shutErr := s.srv.Shutdown(sctx)
	if shutErr != nil {
		// Stragglers past the deadline are cut off rather than holding
		// the process.
		_ = s.srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve http on %s: %w", ln.Addr(), err)
	}
	if shutErr != nil {
		return fmt.Errorf("shut down http server: %w", shutErr)
	}
	return nil
}

// readiness is the /readyz answer.
type readiness struct {
	Status  string            `json:"status"` // "ready" or "not ready"
	Failing map[string]string `json:"failing,omitempty"`
}

func (s *Server) serveReadyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.readinessTimeout)
	defer cancel()
	failing := s.runChecks(ctx)

	res := readiness{Status: "ready"}
	code := http.StatusOK
	if len(failing) > 0 {
		res = readiness{Status: "not ready", Failing: failing}
		code = http.StatusServiceUnavailable
	}
	if wantsJSON(r) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(res)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	var b strings.Builder
	b.WriteString(res.Status + "\n")
	for _, name := range slices.Sorted(mapKeys(failing)) {
		fmt.Fprintf(&b, "%s: %s\n", name, failing[name])
	}
	_, _ = w.Write([]byte(b.String()))
}

// runChecks runs all checks concurrently and returns the failing ones by
// name with their reasons.
func (s *Server) runChecks(ctx context.Context) map[string]string {
	s.mu.Lock()
	checks := make(map[string]func(context.Context) error, len(s.checks))
	for k, v := range s.checks {
		checks[k] = v
	}
	s.mu.Unlock()

	type result struct {
		name string
		err  error
	}
	results := make(chan result, len(checks))
	for name, check := range checks {
		go func() {
			defer func() {
				if p := recover(); p != nil {
					results <- result{name, fmt.Errorf("check panicked: %v", p)}
				}
			}()
			results <- result{name, check(ctx)}
		}()
	}
	failing := make(map[string]string)
	pending := make(map[string]bool, len(checks))
	for name := range checks {
		pending[name] = true
	}
	for len(pending) > 0 {
		select {
		case r := <-results:
			delete(pending, r.name)
			if r.err != nil {
				failing[r.name] = r.err.Error()
			}
		case <-ctx.Done():
			// Checks that ignore ctx are abandoned; their goroutines
			// finish into the buffered channel.
			for name := range pending {
				failing[name] = fmt.Sprintf("no answer: %v", ctx.Err())
			}
			return failing
		}
	}
	return failing
}

func wantsJSON(r *http.Request) bool {
	if r.URL.Query().Get("format") == "json" {
		return true
	}
	return strings.Contains(r.Header.Get("Accept"), "application/json")
}

func mapKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// promLogger adapts slog to promhttp's Println-style logger.
type promLogger struct{ l *slog.Logger }

func (p promLogger) Println(v ...any) {
	p.l.Warn("metrics handler", "error", fmt.Sprint(v...))
}

// RegisterRuntimeCollectors adds the standard Go runtime and process
// collectors (go_*, process_*) to reg.
func RegisterRuntimeCollectors(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register runtime collector: %w", err)
		}
	}
	return nil
}
