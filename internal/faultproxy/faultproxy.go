// Package faultproxy is an HTTP reverse proxy on loopback that puts faults
// between a client and a server: it can stop listening (the server looks
// down: connections are refused, open ones are cut) and answer slowly (a
// delay before each request is forwarded). The fault suite puts it in front
// of the S3 server to show that ingestion rides out an outage and a slow
// store without losing, duplicating or hoarding records.
//
// The Host header is passed through unchanged, so signed requests (S3
// SigV4) stay valid when the client is pointed at the proxy.
package faultproxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
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

	mu  sync.Mutex
	srv *http.Server // nil while down
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

// SetDelay makes every request wait d before it is forwarded; 0 turns the
// delay off. Requests already waiting keep their delay.
func (p *Proxy) SetDelay(d time.Duration) { p.delay.Store(int64(d)) }

// Stats are counts since Start.
type Stats struct {
	Requests int64 // requests received (while up)
	Delayed  int64 // requests held back by a delay
	Outages  int64 // calls of Down that took the proxy down
}

// Stats returns the counts so far.
func (p *Proxy) Stats() Stats {
	return Stats{Requests: p.requests.Load(), Delayed: p.delayed.Load(), Outages: p.refusedAt.Load()}
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
