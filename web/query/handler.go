package query

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/sluicehq/sluice/schema"
	"github.com/sluicehq/sluice/web/auth"
)

// DefaultMaxResultBytes bounds one encoded answer.
const DefaultMaxResultBytes = 64 << 20

// Handler serves GET and POST /v1/query.
type Handler struct {
	src      *Source
	tables   map[string]*schema.Table
	maxBytes int
	logger   *slog.Logger
	latency  *prometheus.HistogramVec // code
}

// Metrics are the query API's series, created once per process and given
// to its handlers.
type Metrics struct {
	latency *prometheus.HistogramVec // code
}

// NewMetrics creates the series on reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	return &Metrics{latency: promauto.With(reg).NewHistogramVec(prometheus.HistogramOpts{
		Name:    "sluice_web_query_duration_seconds",
		Help:    "Query API requests by status code, from parsing to the last byte written.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
	}, []string{"code"})}
}

// NewHandler serves queries over tables from src. A nil m keeps the
// metrics unregistered.
func NewHandler(src *Source, tables []*schema.Table, logger *slog.Logger, m *Metrics) *Handler {
	if m == nil {
		m = NewMetrics(nil)
	}
	h := &Handler{src: src, tables: map[string]*schema.Table{}, maxBytes: DefaultMaxResultBytes, logger: logger,
		latency: m.latency}
	for _, t := range tables {
		h.tables[t.Name] = t
	}
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	code := h.serve(w, r)
	h.latency.WithLabelValues(strconv.Itoa(code)).Observe(time.Since(start).Seconds())
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request) int {
	fail := func(code int, msg string) int {
		auth.WriteError(w, code, msg)
		return code
	}
	var req Request
	var err error
	if r.Method == http.MethodPost {
		body, rerr := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
		if rerr != nil {
			return fail(http.StatusRequestEntityTooLarge, "query body over 64 KiB")
		}
		req, err = ParseJSON(body)
	} else {
		req, err = ParseValues(r.URL.Query())
	}
	if err != nil {
		return fail(http.StatusBadRequest, err.Error())
	}
	t := h.tables[req.Table]
	if !auth.Allowed(r.Context(), auth.ActionRead, req.Table) {
		auth.Forbid(w, auth.ActionRead, req.Table)
		return http.StatusForbidden
	}
	if t == nil {
		return fail(http.StatusNotFound, "no table "+strconv.Quote(req.Table))
	}
	if p, ok := auth.FromContext(r.Context()); ok {
		// A token's fixed filters narrow every query made with it.
		for dim, v := range p.Filters {
			if have, ok := req.Filters[dim]; ok {
				var both []string
				for _, x := range have {
					if x == v {
						both = append(both, x)
					}
				}
				if len(both) == 0 {
					both = []string{"\x00none"} // nothing can match
				}
				req.Filters[dim] = both
			} else {
				req.Filters[dim] = []string{v}
			}
		}
	}
	format, err := Negotiate(r.URL.Query().Get("format"), r.Header.Get("Accept"))
	if errors.Is(err, ErrNotAcceptable) {
		return fail(http.StatusNotAcceptable, err.Error())
	}
	if err != nil {
		return fail(http.StatusBadRequest, err.Error())
	}
	plan, err := NewPlan(t, req)
	if err != nil {
		return fail(http.StatusBadRequest, err.Error())
	}
	if h.src == nil || h.src.Summaries == nil {
		return fail(http.StatusServiceUnavailable, "no summary store is configured")
	}
	res, err := h.src.Run(r.Context(), t, req, plan)
	if err != nil {
		h.logger.Warn("query failed", "table", t.Name, "err", err)
		return fail(http.StatusServiceUnavailable, "query failed: "+err.Error())
	}
	body, err := Encode(res, format, h.maxBytes)
	if errors.Is(err, ErrTooLarge) {
		return fail(http.StatusBadRequest, err.Error())
	}
	if err != nil {
		return fail(http.StatusInternalServerError, err.Error())
	}
	w.Header().Set("Content-Type", format)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
	return http.StatusOK
}
