package httpin

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/schema"
)

// Config bounds what one request may carry and how long it waits.
type Config struct {
	// MaxBodyBytes bounds a request body, both as sent and after gzip is
	// undone (4 MiB by default, as Firehose's Direct PUT): more is 413.
	MaxBodyBytes int64
	// MaxRecords bounds the records of one request (10,000 by default).
	MaxRecords int
	// WaitTimeout bounds how long a request waits for its records to be
	// committed (30 s by default); past it the answer is 503 and the
	// records stay queued: retry with the same Idempotency-Key.
	WaitTimeout time.Duration
	// IdempotencyTTL is how long an Idempotency-Key deduplicates (24 h).
	IdempotencyTTL time.Duration
}

// Defaults for Config.
const (
	DefaultMaxBodyBytes = 4 << 20
	DefaultMaxRecords   = 10_000
	DefaultWaitTimeout  = 30 * time.Second
	maxIdempotencyKey   = 255
)

// WithDefaults fills zero fields.
func (c Config) WithDefaults() Config {
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.MaxRecords <= 0 {
		c.MaxRecords = DefaultMaxRecords
	}
	if c.WaitTimeout <= 0 {
		c.WaitTimeout = DefaultWaitTimeout
	}
	if c.IdempotencyTTL <= 0 {
		c.IdempotencyTTL = DefaultIdempotencyTTL
	}
	return c
}

type callerKey struct{}

// WithCaller names the authenticated caller of a request; idempotency keys
// are scoped to it, so two callers cannot see each other's answers.
func WithCaller(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, callerKey{}, id)
}

func callerOf(ctx context.Context) string {
	id, _ := ctx.Value(callerKey{}).(string)
	return id
}

// Handler serves POST /v1/tables/{table}/events.
type Handler struct {
	cfg    Config
	src    *Source
	store  *idempotencyStore
	logger *slog.Logger
	decs   map[string]*sync.Pool // *schema.Decoder by table

	kafka    map[string]*schema.Table // Kafka-fed tables taking events (AddKafkaTables)
	producer Producer

	requests *prometheus.CounterVec // table, code
	records  *prometheus.CounterVec // table, outcome

	mu     sync.Mutex
	queued map[string]queuedSpan // claim key -> what this process did with its last span, until the claim is marked done
}

// queuedSpan is what this process knows of a claim's span it wrote: only
// it can tell a span it queued from one whose claim write looked failed
// (and whose positions went to other records).
type queuedSpan struct {
	span  Span
	state spanState
}

type spanState int

const (
	spanWriting spanState = iota // the claim is being written; its records are not queued yet
	spanQueued                   // the claim is stored and the records queued
	spanLost                     // the claim write failed ambiguously: the records were not queued
)

// Metrics are the HTTP ingest series of one process, created once on its
// registerer and given to its handler.
type Metrics struct {
	requests *prometheus.CounterVec // table, code
	records  *prometheus.CounterVec // table, outcome
}

// NewMetrics creates the series on reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	return &Metrics{
		requests: f.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_httpin_requests_total",
			Help: "HTTP ingest requests by table and status code.",
		}, []string{"table", "code"}),
		records: f.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_httpin_records_total",
			Help: "Records received over HTTP by table and outcome (accepted, refused).",
		}, []string{"table", "outcome"}),
	}
}

// NewHandler serves the source's tables. b is the lake's bucket, where
// Idempotency-Key claims are kept; it must support conditional writes. A
// nil m keeps the metrics unregistered.
func NewHandler(cfg Config, src *Source, b objstore.Bucket, commits *lake.CommitLog, logger *slog.Logger, m *Metrics) (*Handler, error) {
	cb, ok := b.(objstore.ConditionalBucket)
	if !ok {
		return nil, fmt.Errorf("http ingest: bucket %s cannot replace objects conditionally", b.Name())
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	cfg = cfg.WithDefaults()
	h := &Handler{
		cfg:      cfg,
		src:      src,
		store:    &idempotencyStore{b: cb, commits: commits, ttl: cfg.IdempotencyTTL, now: time.Now},
		logger:   logger,
		decs:     map[string]*sync.Pool{},
		kafka:    map[string]*schema.Table{},
		queued:   map[string]queuedSpan{},
		requests: m.requests,
		records:  m.records,
	}
	for name, p := range src.parts {
		h.decs[name] = newDecoderPool(p.table)
	}
	return h, nil
}

func newDecoderPool(t *schema.Table) *sync.Pool {
	return &sync.Pool{New: func() any { return schema.NewDecoder(t) }}
}

// table returns the definition of a table the handler takes events for.
func (h *Handler) table(name string) *schema.Table {
	if t := h.src.Table(name); t != nil {
		return t
	}
	return h.kafka[name]
}

// Result is the outcome of one record, in request order.
type Result struct {
	Status string `json:"status"`           // "accepted" or "refused"
	Reason string `json:"reason,omitempty"` // a dead-letter reason (schema.Reason)
	Field  string `json:"field,omitempty"`
	Error  string `json:"error,omitempty"`
}

// Response is the body of a 200 or 202 answer.
type Response struct {
	Table    string   `json:"table"`
	Received int      `json:"received"`
	Accepted int      `json:"accepted"`
	Refused  int      `json:"refused"`
	Durable  bool     `json:"durable"`            // the accepted records are committed to the lake
	Replayed bool     `json:"replayed,omitempty"` // the answer of an earlier request with the same Idempotency-Key
	Results  []Result `json:"results"`
}

// errorBody is the body of every 4xx and 5xx answer.
type errorBody struct {
	Error string `json:"error"`
}

func (h *Handler) fail(w http.ResponseWriter, table string, code int, msg string) {
	if code == http.StatusServiceUnavailable || code == http.StatusConflict {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, code, errorBody{Error: msg})
	h.requests.WithLabelValues(table, strconv.Itoa(code)).Inc()
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	table := r.PathValue("table")
	t := h.table(table)
	if t == nil {
		h.fail(w, "", http.StatusNotFound, fmt.Sprintf("table %q does not take HTTP ingest", table))
		return
	}
	wait := true
	switch r.URL.Query().Get("wait") {
	case "", "true":
	case "false":
		wait = false
	default:
		h.fail(w, table, http.StatusBadRequest, "wait must be true or false")
		return
	}
	idem := r.Header.Get("Idempotency-Key")
	if len(idem) > maxIdempotencyKey {
		h.fail(w, table, http.StatusBadRequest, fmt.Sprintf("Idempotency-Key is longer than %d bytes", maxIdempotencyKey))
		return
	}
	body, code, err := readBody(r, w, h.cfg.MaxBodyBytes)
	if err != nil {
		h.fail(w, table, code, err.Error())
		return
	}
	values, err := SplitRecords(body, h.cfg.MaxRecords)
	if err != nil {
		code := http.StatusBadRequest
		if errors.Is(err, errTooManyRecords) {
			code = http.StatusRequestEntityTooLarge
		}
		h.fail(w, table, code, err.Error())
		return
	}
	resp, accepted := h.decode(table, values)
	h.records.WithLabelValues(table, "accepted").Add(float64(resp.Accepted))
	h.records.WithLabelValues(table, "refused").Add(float64(resp.Refused))

	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.WaitTimeout)
	defer cancel()
	if h.kafka[table] != nil {
		if !wait {
			h.fail(w, table, http.StatusBadRequest, "wait=false is for tables fed by HTTP; a Kafka-fed table answers once the broker acknowledged")
			return
		}
		code, resp, err := h.produce(ctx, t, idem, callerOf(r.Context()), resp, accepted)
		if err != nil {
			h.fail(w, table, code, err.Error())
			return
		}
		writeJSON(w, code, resp)
		h.requests.WithLabelValues(table, strconv.Itoa(code)).Inc()
		return
	}
	if idem == "" {
		var span Span
		if len(accepted) > 0 {
			span, err = h.src.Append(table, accepted, nil)
			if err != nil {
				h.fail(w, table, http.StatusServiceUnavailable, err.Error())
				return
			}
		}
		h.answer(ctx, w, table, span, resp, wait, len(accepted) == 0)
		return
	}
	h.idempotent(ctx, w, table, callerOf(r.Context()), idem, resp, accepted, wait)
}

// answer waits for span (unless !wait) and writes resp.
func (h *Handler) answer(ctx context.Context, w http.ResponseWriter, table string, span Span, resp Response, wait, durable bool) {
	if !durable && wait {
		if err := h.src.Wait(ctx, table, span); err != nil {
			h.fail(w, table, http.StatusServiceUnavailable, fmt.Sprintf("records queued but not yet committed (%v); retry with the same Idempotency-Key", err))
			return
		}
		durable = true
	}
	resp.Durable = durable
	code := http.StatusOK
	if !durable {
		code = http.StatusAccepted
	}
	writeJSON(w, code, resp)
	h.requests.WithLabelValues(table, strconv.Itoa(code)).Inc()
}

// idempotent is ServeHTTP for a request with an Idempotency-Key.
func (h *Handler) idempotent(ctx context.Context, w http.ResponseWriter, table, caller, idem string, resp Response, accepted [][]byte, wait bool) {
	key := claimKey(table, caller, idem)
	bodyHash := recordsHash(accepted, resp.Refused)

	for attempt := 0; ; attempt++ { // each turn lost a race to another request with the key
		if attempt > 0 {
			select {
			case <-ctx.Done():
				h.fail(w, table, http.StatusConflict, errClaimBusy.Error())
				return
			case <-time.After(time.Duration(min(attempt, 10)) * 5 * time.Millisecond):
			}
		}
		c, ver, ok, err := h.store.load(ctx, key)
		if err != nil {
			h.fail(w, table, http.StatusServiceUnavailable, err.Error())
			return
		}
		if !ok {
			stored, _ := json.Marshal(resp)
			nc := claim{Table: table, Created: h.store.now().UTC(), BodyHash: bodyHash, Response: stored}
			span, err := h.queue(ctx, key, table, nc, ver, accepted)
			if objstore.IsExists(err) || objstore.IsChanged(err) {
				continue
			}
			if err != nil {
				h.fail(w, table, http.StatusServiceUnavailable, err.Error())
				return
			}
			h.answerClaim(ctx, w, table, key, span, resp, wait, len(accepted) == 0)
			return
		}
		if c.BodyHash != bodyHash {
			h.fail(w, table, http.StatusUnprocessableEntity, "Idempotency-Key was used for a request with other records")
			return
		}
		var first Response
		if err := json.Unmarshal(c.Response, &first); err != nil {
			first = resp
		}
		first.Replayed = true
		switch h.settleLastSpan(ctx, w, table, key, &c, first, wait) {
		case retryClaim:
			continue
		case answered:
			return
		}
		done := c.accepted()
		if done > uint64(len(accepted)) {
			h.fail(w, table, http.StatusInternalServerError, "idempotency claim holds more records than the request")
			return
		}
		span, err := h.queue(ctx, key, table, c, ver, accepted[done:])
		if objstore.IsExists(err) || objstore.IsChanged(err) {
			continue
		}
		if err != nil {
			h.fail(w, table, http.StatusServiceUnavailable, err.Error())
			return
		}
		h.answerClaim(ctx, w, table, key, span, first, wait, done == uint64(len(accepted)))
		return
	}
}

// lastSpanOutcome is what the last span of an existing claim leaves a
// retry of its request to do.
type lastSpanOutcome int

const (
	requeueRest lastSpanOutcome = iota // queue the records not committed again
	retryClaim                         // read the claim again
	answered                           // the request is answered
)

// settleLastSpan finds out what became of the records of the claim's last
// span and answers the request when that is known: all committed (or no
// span: the first request's answer is replayed), still queued here, or
// held by another server. Otherwise it drops from c what was not
// committed, for the caller to queue again.
func (h *Handler) settleLastSpan(ctx context.Context, w http.ResponseWriter, table, key string, c *claim, first Response, wait bool) lastSpanOutcome {
	if c.Done || len(c.Spans) == 0 {
		first.Durable = true
		writeJSON(w, http.StatusOK, first)
		h.requests.WithLabelValues(table, "200").Inc()
		return answered
	}
	last := c.Spans[len(c.Spans)-1]
	if last.Partition == h.src.Instance() && last.SourceID == h.src.SourceID(table) {
		h.mu.Lock()
		q, mine := h.queued[key]
		h.mu.Unlock()
		if mine && q.state == spanWriting {
			return retryClaim // a request is writing the claim: read it again once it is done
		}
		if mine && q.span == last && q.state == spanQueued {
			h.answerClaim(ctx, w, table, key, last, first, wait, false)
			return answered
		}
		// This process wrote the claim but never queued its records
		// (the claim's write looked failed): they are lost, as after
		// a crash; the positions were given to other records.
		c.Spans = c.Spans[:len(c.Spans)-1]
		return requeueRest
	}
	n, err := h.store.committedIn(ctx, table, last)
	if err != nil {
		h.fail(w, table, http.StatusServiceUnavailable, err.Error())
		return answered
	}
	if n == last.Next-last.First {
		h.markDone(ctx, key)
		first.Durable = true
		writeJSON(w, http.StatusOK, first)
		h.requests.WithLabelValues(table, "200").Inc()
		return answered
	}
	if last.Partition != h.src.Instance() {
		// Another server holds them and may still commit them.
		h.fail(w, table, http.StatusConflict, errClaimBusy.Error()+" on server "+last.Partition)
		return answered
	}
	// An earlier run of this server held them and stopped: what
	// it committed stays, the rest is queued again.
	if n == 0 {
		c.Spans = c.Spans[:len(c.Spans)-1]
	} else {
		c.Spans[len(c.Spans)-1].Next = last.First + n
	}
	return requeueRest
}

// recordsHash identifies a request's records, so a key reused for other
// records is refused rather than answered with the first request's result.
func recordsHash(accepted [][]byte, refused int) string {
	hash := sha256.New()
	for _, v := range accepted {
		hash.Write(v)
		hash.Write([]byte{'\n'})
	}
	fmt.Fprintf(hash, "refused:%d", refused)
	return hex.EncodeToString(hash.Sum(nil))
}

// queue appends values under a claim written (conditionally, on version
// ver: "" creates) before they can be delivered.
func (h *Handler) queue(ctx context.Context, key, table string, c claim, ver string, values [][]byte) (Span, error) {
	if len(values) == 0 {
		c.Done = true
		return Span{}, h.store.put(ctx, key, c, ver)
	}
	set := func(q queuedSpan) {
		h.mu.Lock()
		h.queued[key] = q
		h.mu.Unlock()
	}
	span, err := h.src.Append(table, values, func(s Span) error {
		c.Spans = append(c.Spans, s)
		h.mu.Lock()
		prev, hadPrev := h.queued[key]
		h.mu.Unlock()
		// Marked before the write: a retry that reads the claim must not
		// take it for a lost one while its records are about to be queued.
		set(queuedSpan{span: s, state: spanWriting})
		err := h.store.put(ctx, key, c, ver)
		switch {
		case err == nil:
			set(queuedSpan{span: s, state: spanQueued})
		case objstore.IsExists(err) || objstore.IsChanged(err):
			// Another request's claim stands: so does what we knew of it.
			h.mu.Lock()
			if hadPrev {
				h.queued[key] = prev
			} else {
				delete(h.queued, key)
			}
			h.mu.Unlock()
		default:
			set(queuedSpan{span: s, state: spanLost})
		}
		return err
	})
	if err != nil {
		return Span{}, err
	}
	return span, nil
}

func (h *Handler) answerClaim(ctx context.Context, w http.ResponseWriter, table, key string, span Span, resp Response, wait, durable bool) {
	if !durable && wait {
		if err := h.src.Wait(ctx, table, span); err != nil {
			h.fail(w, table, http.StatusServiceUnavailable, fmt.Sprintf("records queued but not yet committed (%v); retry with the same Idempotency-Key", err))
			return
		}
		durable = true
		h.markDone(ctx, key)
	}
	h.answer(ctx, w, table, span, resp, false, durable)
}

// markDone records that a claim's records are committed, so later retries
// answer without reading the chain. It is only a shortcut: on failure the
// chain gives the same answer.
func (h *Handler) markDone(ctx context.Context, key string) {
	c, ver, ok, err := h.store.load(ctx, key)
	if err == nil && ok && !c.Done {
		c.Done = true
		err = h.store.put(ctx, key, c, ver)
	}
	if err != nil {
		h.logger.Debug("idempotency claim not marked done", "err", err)
		return
	}
	h.mu.Lock()
	delete(h.queued, key)
	h.mu.Unlock()
}

// decode checks every record with the table's decoder (the checks the
// pipeline applies, with the same reasons as dead letters) and returns the
// per-record results and the accepted values.
func (h *Handler) decode(table string, values [][]byte) (Response, [][]byte) {
	pool := h.decs[table]
	dec := pool.Get().(*schema.Decoder)
	defer pool.Put(dec)
	b := schema.NewBatch(h.table(table), memory.DefaultAllocator)
	defer b.Release()
	resp := Response{Table: table, Received: len(values), Results: make([]Result, len(values))}
	accepted := make([][]byte, 0, len(values))
	for i, v := range values {
		_, err := dec.Decode(b, v, schema.Meta{Source: SourceName(table), Partition: h.src.Instance()})
		if err == nil {
			resp.Results[i] = Result{Status: "accepted"}
			accepted = append(accepted, v)
			continue
		}
		res := Result{Status: "refused", Reason: "undecodable", Error: err.Error()}
		var re *schema.RecordError
		if errors.As(err, &re) {
			res.Reason, res.Field = string(re.Reason), re.Field
		}
		resp.Results[i] = res
	}
	resp.Accepted = len(accepted)
	resp.Refused = len(values) - len(accepted)
	return resp, accepted
}

// readBody reads the whole body, undoing gzip, within limit bytes both
// ways; the status code comes with the error.
func readBody(r *http.Request, w http.ResponseWriter, limit int64) ([]byte, int, error) {
	raw := http.MaxBytesReader(w, r.Body, limit)
	var rd io.Reader = raw
	switch enc := r.Header.Get("Content-Encoding"); enc {
	case "", "identity":
	case "gzip":
		gz, err := gzip.NewReader(raw)
		if err != nil {
			return nil, bodyErrCode(err, http.StatusBadRequest), fmt.Errorf("body is not valid gzip: %v", err)
		}
		defer gz.Close()
		rd = gz
	default:
		return nil, http.StatusUnsupportedMediaType, fmt.Errorf("Content-Encoding %q is not supported (gzip or none)", enc)
	}
	data, err := io.ReadAll(io.LimitReader(rd, limit+1))
	if err != nil {
		return nil, bodyErrCode(err, http.StatusBadRequest), fmt.Errorf("read body: %v", err)
	}
	if int64(len(data)) > limit {
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("body is more than %d bytes after decompression", limit)
	}
	return data, 0, nil
}

func bodyErrCode(err error, otherwise int) int {
	var mb *http.MaxBytesError
	if errors.As(err, &mb) {
		return http.StatusRequestEntityTooLarge
	}
	return otherwise
}

var errTooManyRecords = errors.New("too many records")

// SplitRecords cuts a body into records: a JSON array (each element a
// record), one JSON object, or JSON lines (each non-blank line a record).
// A malformed line is a record that will be refused; a malformed array is
// an error, since its records cannot be told apart.
func SplitRecords(body []byte, maxRecords int) ([][]byte, error) {
	trim := bytes.TrimSpace(body)
	if len(trim) == 0 {
		return nil, errors.New("body holds no records")
	}
	var out [][]byte
	add := func(v []byte) error {
		if len(out) >= maxRecords {
			return fmt.Errorf("%w: more than %d in one request", errTooManyRecords, maxRecords)
		}
		out = append(out, v)
		return nil
	}
	switch {
	case trim[0] == '[':
		dec := json.NewDecoder(bytes.NewReader(trim))
		if _, err := dec.Token(); err != nil {
			return nil, fmt.Errorf("body is not a valid JSON array: %v", err)
		}
		for dec.More() {
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				return nil, fmt.Errorf("body is not a valid JSON array: %v", err)
			}
			if err := add(raw); err != nil {
				return nil, err
			}
		}
		if _, err := dec.Token(); err != nil {
			return nil, fmt.Errorf("body is not a valid JSON array: %v", err)
		}
		if _, err := dec.Token(); err != io.EOF {
			return nil, errors.New("body is not a valid JSON array: data after the closing bracket")
		}
	case trim[0] == '{' && json.Valid(trim):
		out = append(out, trim)
	default:
		for line := range bytes.SplitSeq(trim, []byte{'\n'}) {
			line = bytes.TrimSpace(line)
			if len(line) == 0 {
				continue
			}
			if err := add(line); err != nil {
				return nil, err
			}
		}
	}
	if len(out) == 0 {
		return nil, errors.New("body holds no records")
	}
	return out, nil
}
