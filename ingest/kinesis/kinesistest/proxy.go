package kinesistest

import (
	"bytes"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// Proxy stands between Kinesis clients and the server: it counts the
// GetRecords calls made on each shard (shard iterators are opaque, so it
// follows them: GetShardIterator's answer and each GetRecords answer's
// next iterator belong to the shard asked for), and it can answer a share
// of GetRecords calls with ProvisionedThroughputExceeded or
// ExpiredIterator instead of forwarding them.
type Proxy struct {
	URL    string
	target string
	srv    *http.Server

	mu       sync.Mutex
	iters    map[string]string      // iterator -> shard
	calls    map[string][]time.Time // shard -> GetRecords calls
	throttle float64
	expire   float64
	injected map[string]int // error type -> answers injected
}

// NewProxy listens on 127.0.0.1 and forwards to target (the server's URL);
// it stops with the test.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{URL: "http://" + ln.Addr().String(), target: strings.TrimSuffix(target, "/"),
		iters: map[string]string{}, calls: map[string][]time.Time{}, injected: map[string]int{}}
	p.srv = &http.Server{Handler: http.HandlerFunc(p.serve), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = p.srv.Serve(ln) }()
	t.Cleanup(func() { _ = p.srv.Close() })
	return p
}

// Inject makes the proxy answer the given shares (0 to 1) of GetRecords
// calls with ProvisionedThroughputExceeded and with ExpiredIterator.
func (p *Proxy) Inject(throttle, expire float64) {
	p.mu.Lock()
	p.throttle, p.expire = throttle, expire
	p.mu.Unlock()
}

// Injected returns how many answers of each error type were injected.
func (p *Proxy) Injected() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]int{}
	for k, v := range p.injected {
		out[k] = v
	}
	return out
}

// Calls returns the times of the GetRecords calls on each shard.
func (p *Proxy) Calls() map[string][]time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string][]time.Time{}
	for k, v := range p.calls {
		out[k] = append([]time.Time(nil), v...)
	}
	return out
}

// MaxRate returns, per shard, the most GetRecords calls within any one
// second.
func (p *Proxy) MaxRate() map[string]int {
	out := map[string]int{}
	for shard, ts := range p.Calls() {
		best, j := 0, 0
		for i := range ts {
			for ts[i].Sub(ts[j]) >= time.Second {
				j++
			}
			best = max(best, i-j+1)
		}
		out[shard] = best
	}
	return out
}

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	op := r.Header.Get("X-Amz-Target")
	op = op[strings.LastIndexByte(op, '.')+1:]
	var in struct{ ShardIterator, ShardId string }
	_ = json.Unmarshal(body, &in)
	shard := in.ShardId
	if op == "GetRecords" {
		p.mu.Lock()
		shard = p.iters[in.ShardIterator]
		p.calls[shard] = append(p.calls[shard], time.Now())
		inject := ""
		switch x := rand.Float64(); {
		case x < p.throttle:
			inject = "ProvisionedThroughputExceededException"
		case x < p.throttle+p.expire:
			inject = "ExpiredIteratorException"
		}
		if inject != "" {
			p.injected[inject]++
		}
		p.mu.Unlock()
		if inject != "" {
			w.Header().Set("Content-Type", "application/x-amz-json-1.1")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"__type":"` + inject + `","message":"injected by the test proxy"}`))
			return
		}
	}
	req, err := http.NewRequestWithContext(r.Context(), r.Method, p.target+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	req.Header = r.Header.Clone()
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	if resp.StatusCode == http.StatusOK && (op == "GetShardIterator" || op == "GetRecords") {
		var res struct{ ShardIterator, NextShardIterator string }
		if json.Unmarshal(out, &res) == nil {
			p.mu.Lock()
			if op == "GetRecords" {
				delete(p.iters, in.ShardIterator)
			}
			for _, it := range []string{res.ShardIterator, res.NextShardIterator} {
				if it != "" {
					p.iters[it] = shard
				}
			}
			p.mu.Unlock()
		}
	}
	for k, vs := range resp.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(out)
}
