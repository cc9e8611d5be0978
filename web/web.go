package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/ingest"
	"github.com/sluicehq/sluice/ingest/httpin"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/schema"
	"github.com/sluicehq/sluice/web/auth"
	"github.com/sluicehq/sluice/web/page"
	"github.com/sluicehq/sluice/web/query"
)

// Config of the web tier.
type Config struct {
	// Instance names this server's HTTP ingest partitions (default: the
	// host name); servers sharing a lake need different names.
	Instance string `yaml:"instance"`
	// FlushInterval is how long an HTTP ingest partition buffers before a
	// flush (200 ms by default): a 200 waits for the commit, so this is
	// the floor of ingest latency, traded against object count.
	FlushInterval time.Duration `yaml:"flush_interval"`
	// FlushRecords flushes a partition as soon as it holds this many
	// records (1,000 by default): a request of that many is committed
	// without waiting for the interval (p50 68 ms instead of 276 ms in
	// BENCHMARKS.md), at the cost of one object per such request until
	// compaction merges them.
	FlushRecords int           `yaml:"flush_records"`
	Ingest       httpin.Config `yaml:"-"`
	Auth         auth.Config   `yaml:"-"`
	// QueryCacheUnits is how many decoded summary objects the query API
	// keeps (256 by default, a week and a half of 1-minute windows; -1:
	// none). Decoding sketches is most of a query's cost.
	QueryCacheUnits int `yaml:"query_cache_units"`
	// KeyCacheTTL is how long a key lookup is trusted, so how long a
	// revoked key keeps working on a server (auth.CacheTTL by default).
	KeyCacheTTL time.Duration `yaml:"-"`
}

// Defaults for HTTP ingest.
const (
	DefaultFlushInterval = 200 * time.Millisecond
	DefaultFlushRecords  = 1000
)

// Mux is where handlers are mounted (httpserver.Server, http.ServeMux).
type Mux interface {
	Handle(pattern string, h http.Handler)
}

// Server holds the web tier's parts.
type Server struct {
	cfg    Config
	tables map[string]*schema.Table
	auth   *auth.Authenticator
	logger *slog.Logger

	// HTTP ingest; nil when no table is fed by HTTP.
	writer *ingest.Writer
	pipe   *ingest.Pipeline
	src    *httpin.Source
	ingest *httpin.Handler
	// opened is closed once Run has opened the HTTP partitions (at once
	// without any), openErr set before if that failed: ingest requests
	// wait for it.
	opened  chan struct{}
	openErr error

	query   http.Handler // nil until SetSummaries
	page    *page.Handler
	keys    *auth.KeyStore
	raw     objstore.Bucket
	list    []*schema.Table
	commits *lake.CommitLog

	queryMetrics *query.Metrics
}

// New builds the web tier over the lake bucket raw; it starts nothing.
// Tables whose source is http get an ingest partition on this server,
// opened by Run. The web tier's own series (HTTP ingest, queries) are
// created on reg; its writer counts in writer, the ingest series the
// process shares among its writers (nil: unregistered).
func New(ctx context.Context, cfg Config, tables []*schema.Table, raw objstore.Bucket, logger *slog.Logger, reg prometheus.Registerer, writer *ingest.Metrics) (*Server, error) {
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = DefaultFlushInterval
	}
	if cfg.FlushRecords <= 0 {
		cfg.FlushRecords = DefaultFlushRecords
	}
	if cfg.QueryCacheUnits == 0 {
		cfg.QueryCacheUnits = 256
	}
	keys, err := auth.NewKeyStore(raw)
	if err != nil {
		return nil, err
	}
	if cfg.KeyCacheTTL > 0 {
		keys.SetCacheTTL(cfg.KeyCacheTTL)
	}
	signer, err := auth.LoadSigner(ctx, raw)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, tables: map[string]*schema.Table{}, logger: logger, opened: make(chan struct{}),
		auth: auth.NewAuthenticator(cfg.Auth, keys, signer, logger),
		raw:  raw, list: tables, queryMetrics: query.NewMetrics(reg), commits: lake.NewCommitLog(raw).WithLogger(logger), keys: keys}
	if s.page, err = page.New(); err != nil {
		return nil, err
	}
	var httpTables []*schema.Table
	for _, t := range tables {
		s.tables[t.Name] = t
		if t.SourceKind() == schema.SourceHTTP {
			httpTables = append(httpTables, t)
		}
	}
	s.src, err = httpin.NewSource(httpTables, cfg.Instance, logger)
	if err != nil {
		return nil, err
	}
	if len(httpTables) > 0 {
		s.writer, err = ingest.NewWriter(ingest.WriterConfig{FlushInterval: cfg.FlushInterval, FlushRecords: cfg.FlushRecords}, raw, logger, writer)
		if err != nil {
			return nil, err
		}
		s.pipe = ingest.NewPipeline(s.writer, s.src, logger)
		for _, t := range httpTables {
			s.writer.InitTableMetrics(t.Name)
		}
	} else {
		close(s.opened) // nothing to open
	}
	s.ingest, err = httpin.NewHandler(cfg.Ingest, s.src, raw, s.commits, logger, httpin.NewMetrics(reg))
	if err != nil {
		return nil, err
	}
	return s, nil
}

// SetProducer lets HTTP ingest take events for Kafka-fed tables too,
// produced to their topics through p (acks=all); call before Mount.
func (s *Server) SetProducer(p httpin.Producer) { s.ingest.AddKafkaTables(s.list, p) }

// Auth is the server's authenticator.
func (s *Server) Auth() *auth.Authenticator { return s.auth }

// SetSummaries enables the query API over the summary store; call before
// Mount.
func (s *Server) SetSummaries(b objstore.BucketReader) {
	s.query = query.NewHandler(&query.Source{Raw: s.commits, Summaries: b, CacheUnits: s.cfg.QueryCacheUnits}, s.list, s.logger, s.queryMetrics)
}

// Mount adds the endpoints to mux.
func (s *Server) Mount(mux Mux) {
	protect := s.auth.Middleware
	mux.Handle("POST /v1/tables/{table}/events", protect(http.HandlerFunc(s.serveIngest)))
	mux.Handle("POST /v1/tokens", protect(http.HandlerFunc(s.serveToken)))
	mux.Handle("GET /v1/tables", protect(http.HandlerFunc(s.serveTables)))
	if s.query == nil {
		s.query = query.NewHandler(nil, s.list, s.logger, s.queryMetrics) // answers 503: no summary store
	}
	mux.Handle("GET /v1/query", protect(s.query))
	mux.Handle("POST /v1/query", protect(s.query))
	s.page.Mount(mux) // public: the page holds no data, its token does
}

func (s *Server) serveIngest(w http.ResponseWriter, r *http.Request) {
	table := r.PathValue("table")
	if !auth.Allowed(r.Context(), auth.ActionAppend, table) {
		auth.Forbid(w, auth.ActionAppend, table)
		return
	}
	select {
	case <-s.opened:
	case <-r.Context().Done():
		return
	}
	if s.openErr != nil {
		auth.WriteError(w, http.StatusServiceUnavailable, "http ingest is not available")
		return
	}
	p, _ := auth.FromContext(r.Context())
	s.ingest.ServeHTTP(w, r.WithContext(httpin.WithCaller(r.Context(), p.ID)))
}

// tokenRequest is the body of POST /v1/tokens.
type tokenRequest struct {
	Scopes  auth.Scopes       `json:"scopes"`
	Filters map[string]string `json:"filters"`
	TTL     string            `json:"ttl"` // Go duration, at most 24h; 1h by default
}

// serveToken mints a read-only token, narrower than the calling key.
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	p, _ := auth.FromContext(r.Context())
	if p.Token {
		auth.WriteError(w, http.StatusForbidden, "a token cannot mint tokens; use an API key")
		return
	}
	var req tokenRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		auth.WriteError(w, http.StatusBadRequest, "body: "+err.Error())
		return
	}
	ttl := time.Hour
	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		if err != nil || d <= 0 || d > auth.MaxTokenTTL {
			auth.WriteError(w, http.StatusBadRequest, fmt.Sprintf("ttl must be a duration up to %s", auth.MaxTokenTTL))
			return
		}
		ttl = d
	}
	if len(req.Scopes) == 0 {
		auth.WriteError(w, http.StatusBadRequest, "scopes: at least one read:<table> scope is required")
		return
	}
	for _, sc := range req.Scopes {
		if _, err := auth.ParseScope(string(sc)); err != nil {
			auth.WriteError(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	if !p.Scopes.Covers(req.Scopes) {
		auth.WriteError(w, http.StatusForbidden, "a token may not hold scopes its key lacks")
		return
	}
	exp := time.Now().Add(ttl)
	tok, err := s.auth.Signer().Sign(auth.Claims{KeyID: p.ID, Scopes: req.Scopes, Filters: req.Filters, Expires: exp.Unix()})
	if err != nil {
		auth.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"token": tok, "expires": exp.UTC().Format(time.RFC3339)})
}

// tableInfo is one entry of GET /v1/tables.
type tableInfo struct {
	Name   string `json:"name"`
	Source string `json:"source"`
}

// serveTables lists the tables the caller may read or append to.
func (s *Server) serveTables(w http.ResponseWriter, r *http.Request) {
	p, _ := auth.FromContext(r.Context())
	out := []tableInfo{}
	for name, t := range s.tables {
		if p.Scopes.Allows(auth.ActionRead, name) || p.Scopes.Allows(auth.ActionAppend, name) {
			out = append(out, tableInfo{Name: name, Source: t.SourceKind()})
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"tables": out})
}

// Run opens the HTTP ingest partitions (their chains in the lake), then
// delivers HTTP ingest records until ctx ends, commits what is queued
// (bounded by the writer's flush timeout) and stops. Ingest requests that
// arrive before the partitions are open wait for them.
func (s *Server) Run(ctx context.Context) error {
	sweepDone := make(chan struct{})
	go func() { defer close(sweepDone); s.sweepClaims(ctx) }()
	defer func() { <-sweepDone }()
	if s.pipe == nil {
		<-ctx.Done()
		return nil
	}
	s.pipe.Start()
	if err := s.src.Open(ctx, s.pipe); err != nil {
		s.openErr = fmt.Errorf("open http ingest partitions: %w", err)
		close(s.opened)
		s.pipe.Close()
		s.writer.Close()
		return s.openErr
	}
	close(s.opened)
	err := s.src.Run(ctx)
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.writer.FlushTimeout())
	defer cancel()
	s.pipe.Drain(dctx)
	s.pipe.Close()
	s.writer.Close()
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// claimSweepEvery is how often expired Idempotency-Key claims are deleted.
const claimSweepEvery = time.Hour

// sweepClaims deletes expired Idempotency-Key claims now and every hour
// until ctx ends. Several servers sweeping one lake only repeat deletes.
func (s *Server) sweepClaims(ctx context.Context) {
	t := time.NewTimer(time.Minute) // not in the way of startup
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n, err := s.ingest.SweepClaims(ctx); err != nil {
			s.logger.Warn("sweeping idempotency claims", "err", err)
		} else if n > 0 {
			s.logger.Info("expired idempotency claims deleted", "claims", n)
		}
		t.Reset(claimSweepEvery)
	}
}

// devKeyName names the key `sluice dev` signs its dashboard tokens with.
const devKeyName = "sluice dev dashboard"

// DevToken returns a read-only token for every table, valid for a day,
// signed by a read:* key kept for the purpose (created on first use): what
// `sluice dev` puts in the dashboard URL it prints.
func (s *Server) DevToken(ctx context.Context) (string, error) {
	keys, err := s.keys.List(ctx)
	if err != nil {
		return "", err
	}
	var id string
	for _, k := range keys {
		if k.Name == devKeyName && k.Revoked.IsZero() && slices.Equal(k.Scopes, auth.Scopes{"read:*"}) {
			id = k.ID
		}
	}
	if id == "" {
		k, _, err := s.keys.Create(ctx, devKeyName, auth.Scopes{"read:*"}, 0, 0)
		if err != nil {
			return "", err
		}
		id = k.ID
	}
	return s.auth.Signer().Sign(auth.Claims{KeyID: id, Scopes: auth.Scopes{"read:*"}, Expires: time.Now().Add(auth.MaxTokenTTL).Unix()})
}
