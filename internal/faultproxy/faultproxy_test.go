package faultproxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestProxyFaults(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Host+" "+r.URL.Path)
	}))
	defer backend.Close()
	p, err := Start(backend.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	get := func() (string, error) {
		resp, err := client.Get("http://" + p.Addr() + "/bucket/key")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	want := p.Addr() + " /bucket/key" // the Host header is the proxy's, as the client signed it

	for _, step := range []struct {
		name    string
		do      func() error
		wantErr bool
		minTook time.Duration
	}{
		{name: "up forwards with the host header unchanged"},
		{name: "down refuses", do: func() error { p.Down(); return nil }, wantErr: true},
		{name: "down twice is fine", do: func() error { p.Down(); return nil }, wantErr: true},
		{name: "up again on the same address", do: p.Up},
		{name: "delayed", do: func() error { p.SetDelay(300 * time.Millisecond); return nil }, minTook: 300 * time.Millisecond},
		{name: "delay off", do: func() error { p.SetDelay(0); return nil }},
	} {
		t.Run(step.name, func(t *testing.T) {
			if step.do != nil {
				if err := step.do(); err != nil {
					t.Fatal(err)
				}
			}
			start := time.Now()
			got, err := get()
			took := time.Since(start)
			if step.wantErr {
				if err == nil {
					t.Fatalf("got %q, want a connection error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Fatalf("got %q, want %q", got, want)
			}
			if took < step.minTook {
				t.Fatalf("took %s, want at least %s", took, step.minTook)
			}
		})
	}
	if st := p.Stats(); st.Outages != 1 || st.Delayed != 1 || st.Requests != 4 {
		t.Fatalf("stats %+v, want 1 outage, 1 delayed, 4 requests", st)
	}
}

func TestStartBadTarget(t *testing.T) {
	for _, target := range []string{"", "127.0.0.1:9000", "://x"} {
		if p, err := Start(target); err == nil {
			p.Close()
			t.Errorf("Start(%q) succeeded, want an error", target)
		}
	}
}

func TestProxyFailsAShare(t *testing.T) {
	var reached atomic.Int64
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	defer backend.Close()
	p, err := Start(backend.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.SetFailures(Failures{Method: http.MethodPut, PathPrefix: "/bucket/", Share: 0.5, Forwarded: 0.5, Seed: 7,
		Answers: []Answer{{Status: http.StatusBadRequest, Code: "IncompleteBody"}}})
	do := func(method, path string) int {
		req, err := http.NewRequest(method, "http://"+p.Addr()+path, strings.NewReader("body"))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK && !strings.Contains(string(b), "<Code>IncompleteBody</Code>") {
			t.Fatalf("failure answer %q", b)
		}
		return resp.StatusCode
	}
	failed := 0
	for range 200 {
		if do(http.MethodPut, "/bucket/key") != http.StatusOK {
			failed++
		}
		if do(http.MethodGet, "/bucket/key") != http.StatusOK || do(http.MethodPut, "/other/key") != http.StatusOK {
			t.Fatal("a request that does not match failed")
		}
	}
	st := p.Stats()
	if failed < 60 || failed > 140 || st.Failed != int64(failed) {
		t.Fatalf("%d of 200 matching requests failed (stats %+v), want about half", failed, st)
	}
	if st.Forwarded == 0 || st.Forwarded == st.Failed {
		t.Fatalf("%d of %d failures forwarded, want some", st.Forwarded, st.Failed)
	}
	if want := int64(600 - failed + int(st.Forwarded)); reached.Load() != want {
		t.Fatalf("the server saw %d requests, want %d", reached.Load(), want)
	}
	p.SetFailures(Failures{})
	if do(http.MethodPut, "/bucket/key") != http.StatusOK {
		t.Fatal("failed after failures were turned off")
	}
}
