package faultproxy

import (
	"io"
	"net/http"
	"net/http/httptest"
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

func TestDecodeAWSChunked(t *testing.T) {
	for _, tc := range []struct {
		name, body, want string
		wantErr          bool
	}{
		{name: "two chunks", body: "5;chunk-signature=aa\r\nhello\r\n6;chunk-signature=bb\r\n world\r\n0;chunk-signature=cc\r\n\r\n", want: "hello world"},
		{name: "empty payload", body: "0;chunk-signature=cc\r\n\r\n", want: ""},
		{name: "with a trailer", body: "3;chunk-signature=aa\r\nabc\r\n0\r\nx-amz-checksum-crc32:AAAA\r\n\r\n", want: "abc"},
		{name: "size past the end", body: "ff;chunk-signature=aa\r\nabc\r\n", wantErr: true},
		{name: "no header", body: "abc", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeAWSChunked([]byte(tc.body))
			if (err != nil) != tc.wantErr || string(got) != tc.want {
				t.Errorf("decode = %q, %v; want %q (error %v)", got, err, tc.want, tc.wantErr)
			}
		})
	}
}
