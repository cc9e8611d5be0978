package faultproxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7/pkg/signer"
)

// Proxy forwards HTTP requests to one target. Its methods are safe for
// concurrent use.
type Proxy struct {
	target *url.URL
	addr   string
	rp     *httputil.ReverseProxy

	delay     atomic.Int64 // nanoseconds before each request is forwarded
	requests  atomic.Int64
	delayed   atomic.Int64
	refusedAt atomic.Int64 // outages started
	failed    atomic.Int64
	forwarded atomic.Int64 // failed after the server had the request

	failMu   sync.Mutex
	fail     Failures
	rng      *rand.Rand
	stripped atomic.Int64 // conditional headers dropped

	// noConditional, when set, is how to re-sign PUTs whose conditional
	// headers were dropped.
	noConditional atomic.Pointer[Credentials]

	mu  sync.Mutex
	srv *http.Server // nil while down

	holdMu   sync.Mutex
	hold     func(*http.Request) bool // nil: hold nothing
	held     int                      // requests held or being forwarded after release
	released chan struct{}            // closed by Release
}

// Failures make the proxy answer a random share of matching requests with
// an error. The zero value fails nothing.
type Failures struct {
	Method     string  // e.g. "PUT"; empty matches every method
	PathPrefix string  // e.g. "/bucket/"; empty matches every path
	Share      float64 // of matching requests, 0 to 1
	// Forwarded is the share of the failed requests that reach the server
	// first: the server acts on them (an object is written) and the
	// client hears the error, as when a response is lost.
	Forwarded float64
	// Answers are the errors, one picked at random for each failure;
	// default a 503 SlowDown. Code becomes an S3 error document.
	Answers []Answer
	Seed    uint64 // the same seed fails the same requests of the same sequence
}

// Answer is an HTTP status and an S3 error code.
type Answer struct {
	Status int
	Code   string
}

// Start listens on a free loopback port and forwards to target, e.g.
// "http://127.0.0.1:9000".
func Start(target string) (*Proxy, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: target %q: %w", target, err)
	}
	if u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("faultproxy: target %q needs a scheme and a host", target)
	}
	p := &Proxy{target: u}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.Out.URL.Scheme, r.Out.URL.Host = u.Scheme, u.Host
			r.Out.Host = r.In.Host // signatures cover the Host header
			p.stripConditional(r.Out)
		},
		// Streams responses as they come (large GETs), not buffered.
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			http.Error(w, "faultproxy: "+err.Error(), http.StatusBadGateway)
		},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen: %w", err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	return p, nil
}

// Addr is the proxy's host:port; it stays the same across Down and Up.
func (p *Proxy) Addr() string { return p.addr }

func (p *Proxy) serve(ln net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(p.handle), ReadHeaderTimeout: 30 * time.Second}
	p.srv = srv
	go func() { _ = srv.Serve(ln) }()
}

func (p *Proxy) handle(w http.ResponseWriter, r *http.Request) {
	p.requests.Add(1)
	if ans, forward, ok := p.failure(r); ok {
		p.failed.Add(1)
		if forward {
			p.forwarded.Add(1)
			p.rp.ServeHTTP(httptest.NewRecorder(), r) // the server's answer is lost
		} else {
			_, _ = io.Copy(io.Discard, r.Body) // so the client reads the answer, not a reset
		}
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(ans.Status)
		_, _ = fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>%s</Code><Message>faultproxy: injected failure</Message><Resource>%s</Resource></Error>`, ans.Code, r.URL.Path)
		return
	}
	if release, ok := p.holdIfMatched(r); ok {
		// The body is read first, so that the request can still be
		// forwarded whole when its client is stopped by then.
		body, err := io.ReadAll(r.Body)
		r.Body.Close()
		if err != nil {
			p.doneHolding()
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		// Counted out before the client can see any of the answer (and
		// at the latest when the handler returns): a test that has the
		// answer then reads Held() == 0. Counting out on return alone
		// left a window where the client had its answer and the request
		// still counted as held.
		answered := sync.OnceFunc(p.doneHolding)
		defer answered()
		w = &answerHook{ResponseWriter: w, answered: answered}
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
	}
	if d := time.Duration(p.delay.Load()); d > 0 {
		p.delayed.Add(1)
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	p.rp.ServeHTTP(w, r)
}

// Down stops listening and cuts every open connection, as a stopped server
// would. It is a no-op if the proxy is already down.
func (p *Proxy) Down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.srv == nil {
		return
	}
	_ = p.srv.Close()
	p.srv = nil
	p.refusedAt.Add(1)
}

// Up listens again on the same address. Binding can fail briefly if the
// port was taken meanwhile; it retries for up to ten seconds.
func (p *Proxy) Up() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.srv != nil {
		return nil
	}
	var err error
	for i := 0; i < 100; i++ {
		var ln net.Listener
		if ln, err = net.Listen("tcp", p.addr); err == nil {
			p.serve(ln)
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("faultproxy: listen again on %s: %w", p.addr, err)
}

// SetFailures replaces the failure rule; Failures{} turns failures off.
func (p *Proxy) SetFailures(f Failures) {
	if len(f.Answers) == 0 {
		f.Answers = []Answer{{Status: http.StatusServiceUnavailable, Code: "SlowDown"}}
	}
	p.failMu.Lock()
	defer p.failMu.Unlock()
	p.fail = f
	p.rng = rand.New(rand.NewPCG(f.Seed, f.Seed^0x9e3779b97f4a7c15))
}

// failure decides whether r fails, with which answer and whether it is
// forwarded first.
func (p *Proxy) failure(r *http.Request) (Answer, bool, bool) {
	p.failMu.Lock()
	defer p.failMu.Unlock()
	f := p.fail
	if f.Share <= 0 || (f.Method != "" && r.Method != f.Method) || !strings.HasPrefix(r.URL.Path, f.PathPrefix) {
		return Answer{}, false, false
	}
	if p.rng.Float64() >= f.Share {
		return Answer{}, false, false
	}
	ans := f.Answers[p.rng.IntN(len(f.Answers))]
	return ans, p.rng.Float64() < f.Forwarded, true
}

// SetDelay makes every request wait d before it is forwarded; 0 turns the
// delay off. Requests already waiting keep their delay.
func (p *Proxy) SetDelay(d time.Duration) { p.delay.Store(int64(d)) }

// HoldRequests holds every request for which match returns true (nil:
// none from now on) until Release: its client sees it in flight, the server
// has not seen it. match is called once per request, so it may count.
func (p *Proxy) HoldRequests(match func(*http.Request) bool) {
	p.holdMu.Lock()
	defer p.holdMu.Unlock()
	p.hold = match
	if p.released == nil {
		p.released = make(chan struct{})
	}
}

func (p *Proxy) holdIfMatched(r *http.Request) (<-chan struct{}, bool) {
	p.holdMu.Lock()
	defer p.holdMu.Unlock()
	if p.hold == nil || !p.hold(r) {
		return nil, false
	}
	p.held++
	return p.released, true
}

// answerHook calls answered before the first byte of the answer (its
// status line) is written.
type answerHook struct {
	http.ResponseWriter
	answered func()
}

func (a *answerHook) WriteHeader(code int) {
	a.answered()
	a.ResponseWriter.WriteHeader(code)
}

func (a *answerHook) Write(b []byte) (int, error) {
	a.answered()
	return a.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController (the reverse proxy's flushes) reach
// the connection's writer.
func (a *answerHook) Unwrap() http.ResponseWriter { return a.ResponseWriter }

func (p *Proxy) doneHolding() {
	p.holdMu.Lock()
	p.held--
	p.holdMu.Unlock()
}

// Held is the number of requests held, or released and not yet answered:
// a request counts out before its client sees the first byte of its answer.
func (p *Proxy) Held() int {
	p.holdMu.Lock()
	defer p.holdMu.Unlock()
	return p.held
}

// Release forwards every held request; requests held later wait for the
// next Release.
func (p *Proxy) Release() {
	p.holdMu.Lock()
	defer p.holdMu.Unlock()
	if p.released != nil {
		close(p.released)
	}
	p.released = make(chan struct{})
}

// Credentials sign requests for the server behind the proxy (S3 SigV4).
type Credentials struct {
	AccessKey, SecretKey, Region string
}

// IgnoreConditionalWrites makes the proxy pass for an S3-compatible server
// that does not implement conditional writes: If-None-Match and If-Match
// are removed from PUT requests, which are then signed again with c (the
// headers are part of the signature). A streaming-signed body (aws-chunked,
// whose chunk signatures chain from the request's) is decoded and sent
// whole. nil turns the mode off.
func (p *Proxy) IgnoreConditionalWrites(c *Credentials) { p.noConditional.Store(c) }

func (p *Proxy) stripConditional(out *http.Request) {
	c := p.noConditional.Load()
	if c == nil || out.Method != http.MethodPut || (out.Header.Get("If-None-Match") == "" && out.Header.Get("If-Match") == "") {
		return
	}
	payload, err := io.ReadAll(out.Body)
	out.Body.Close()
	if err != nil {
		out.Body = io.NopCloser(errReader{err})
		return
	}
	sha := out.Header.Get("X-Amz-Content-Sha256")
	if strings.HasPrefix(sha, "STREAMING-") {
		if payload, err = decodeAWSChunked(payload); err != nil {
			out.Body = io.NopCloser(errReader{err})
			return
		}
		sum := sha256.Sum256(payload)
		sha = hex.EncodeToString(sum[:])
		out.Header.Del("Content-Encoding")
		out.Header.Del("X-Amz-Decoded-Content-Length")
		out.Header.Del("X-Amz-Trailer")
	}
	out.Header.Set("X-Amz-Content-Sha256", sha)
	out.Body = io.NopCloser(bytes.NewReader(payload))
	out.ContentLength = int64(len(payload))
	out.Header.Set("Content-Length", strconv.Itoa(len(payload)))
	out.Header.Del("If-None-Match")
	out.Header.Del("If-Match")
	out.Header.Del("Authorization")
	out.Header = signer.SignV4(*out, c.AccessKey, c.SecretKey, "", c.Region).Header
	p.stripped.Add(1)
}

// decodeAWSChunked returns the payload of an aws-chunked body:
// "<hex size>;chunk-signature=<sig>\r\n<data>\r\n" ... ending with a
// chunk of size 0 (and optional trailers, ignored).
func decodeAWSChunked(body []byte) ([]byte, error) {
	var out []byte
	for {
		line, rest, ok := bytes.Cut(body, []byte("\r\n"))
		if !ok {
			return nil, errors.New("faultproxy: aws-chunked body without a chunk header")
		}
		sizeHex, _, _ := bytes.Cut(line, []byte(";"))
		n, err := strconv.ParseInt(string(sizeHex), 16, 64)
		if err != nil || n < 0 || n > int64(len(rest)) {
			return nil, fmt.Errorf("faultproxy: aws-chunked chunk header %q", line)
		}
		if n == 0 {
			return out, nil
		}
		out = append(out, rest[:n]...)
		body = bytes.TrimPrefix(rest[n:], []byte("\r\n"))
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// Stats are counts since Start.
type Stats struct {
	Requests int64 // requests received (while up)
	Delayed  int64 // requests held back by a delay
	Outages  int64 // calls of Down that took the proxy down
	Failed   int64 // requests answered with an injected error
	// Forwarded counts the failed requests the server had acted on.
	Forwarded int64
	// Unconditional counts conditional writes forwarded without their
	// condition (IgnoreConditionalWrites).
	Unconditional int64
}

// Stats returns the counts so far.
func (p *Proxy) Stats() Stats {
	return Stats{Requests: p.requests.Load(), Delayed: p.delayed.Load(), Outages: p.refusedAt.Load(),
		Failed: p.failed.Load(), Forwarded: p.forwarded.Load(), Unconditional: p.stripped.Load()}
}

// Close stops the proxy for good.
func (p *Proxy) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := p.srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = p.srv.Close()
	}
	p.srv = nil
	return err
}
