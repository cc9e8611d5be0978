package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// sluice keys create, then sluice serve: a key takes events into an
// HTTP-fed table (200 once committed), is listed by its prefix and, once
// revoked, refused.
func TestServeAndKeys(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	tables := `tables:
  - name: clicks
    http: {}
    event_time: {field: ts}
    fields:
      - {name: ts, type: timestamp}
      - {name: page, type: string}
    rollup:
      windows: [1m]
      dimensions: [page]
      measures: [{name: clicks, kind: count}]
`
	cfg := fmt.Sprintf("tables_file: tables.yaml\nstore: {local_dir: %s}\nsummary_store: {local_dir: %s}\nhttp: {addr: %q}\nweb: {instance: test-1, flush_interval: 50ms}\n",
		filepath.Join(dir, "lake"), filepath.Join(dir, "sums"), addr)
	for name, body := range map[string]string{"tables.yaml": tables, "sluice.yaml": cfg} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	conf := filepath.Join(dir, "sluice.yaml")
	sluice := func(args ...string) string {
		var out, errb bytes.Buffer
		if code := run(context.Background(), append(args, "--log-level", "warn"), &out, &errb); code != exitOK {
			t.Fatalf("sluice %v: exit %d: %s", args, code, errb.String())
		}
		return out.String()
	}
	out := sluice("keys", "create", "--config", conf, "--scope", "append:clicks", "--name", "ci")
	key := regexp.MustCompile(`(?m)^(sk_[0-9a-f]{12})_\S{32}$`).FindStringSubmatch(out)
	if key == nil {
		t.Fatalf("keys create printed no key:\n%s", out)
	}
	if list := sluice("keys", "list", "--config", conf); !strings.Contains(list, key[1]) || strings.Contains(list, key[0]) {
		t.Fatalf("keys list:\n%s", list)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--config", conf, "--log-level", "warn"}, io.Discard, io.Discard)
	}()
	defer func() {
		cancel()
		if code := <-done; code != exitOK {
			t.Errorf("serve exited %d", code)
		}
	}()
	post := func() int {
		body := fmt.Sprintf(`{"ts":%q,"page":"/"}`, time.Now().Add(-time.Minute).UTC().Format(time.RFC3339))
		req, _ := http.NewRequest("POST", "http://"+addr+"/v1/tables/clicks/events", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key[0])
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		res.Body.Close()
		return res.StatusCode
	}
	var code int
	for i := 0; i < 100 && code == 0; i++ {
		if code = post(); code == 0 {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if code != 200 {
		t.Fatalf("ingest: %d", code)
	}
	sluice("keys", "revoke", "--config", conf, key[1])
	time.Sleep(6 * time.Second) // the server trusts a key lookup for 5 s
	if code := post(); code != 401 {
		t.Fatalf("after revoke: %d", code)
	}
}
