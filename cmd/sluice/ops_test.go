package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/ops"
)

// sluice actions list/show/redeliver on a local lake: a dead letter is
// listed, shown, and redelivered under its id to a receiver that checks
// the signature; afterwards it is no longer dead.
func TestActionsCommands(t *testing.T) {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := ops.Verify(secret, r.Header, body, time.Now(), time.Minute); err != nil {
			w.WriteHeader(401)
			return
		}
		mu.Lock()
		got = append(got, r.Header.Get(ops.HeaderID))
		mu.Unlock()
		w.WriteHeader(204)
	}))
	defer srv.Close()
	dir := t.TempDir()
	lakeDir := filepath.Join(dir, "lake")
	b, err := objstore.NewLocal(lakeDir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	e := &ops.Entry{ID: "fir_cli", Table: "events", Rule: "big", RuleVersion: "v", State: ops.StateFired, Position: "kafka:events/0/7",
		Target: "webhook:hook", Payload: []byte(`{"x":1}`), CreatedAt: time.Now(), Status: ops.StatusDead, Attempts: 8, LastError: "status 500"}
	if _, err := ops.NewActionLog(b).Create(ctx, e); err != nil {
		t.Fatal(err)
	}
	rules := fmt.Sprintf("webhooks: [{name: hook, url: %q, secrets: [%q]}]\nrules:\n  - {name: big, table: events, when: amount > 50, action: {webhook: hook}}\n", srv.URL, secret)
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "sluice.yaml")
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf("store: {local_dir: %q}\nrules_file: rules.yaml\n", lakeDir)), 0o644); err != nil {
		t.Fatal(err)
	}
	sluice := func(args ...string) string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		if code := run(ctx, args, &stdout, &stderr); code != exitOK {
			t.Fatalf("%v: exit %d: %s", args, code, stderr.String())
		}
		return stdout.String()
	}
	if out := sluice("actions", "list", "--config", cfgPath, "--status", "dead"); !strings.Contains(out, "fir_cli") || !strings.Contains(out, "kafka:events/0/7") {
		t.Fatalf("list:\n%s", out)
	}
	if out := sluice("actions", "show", "--config", cfgPath, "fir_cli"); !strings.Contains(out, `"last_error": "status 500"`) {
		t.Fatalf("show:\n%s", out)
	}
	if out := sluice("actions", "redeliver", "--config", cfgPath, "fir_cli"); !strings.Contains(out, "fir_cli: delivered") {
		t.Fatalf("redeliver:\n%s", out)
	}
	if len(got) != 1 || got[0] != "fir_cli" {
		t.Fatalf("receiver got %v", got)
	}
	if out := sluice("actions", "list", "--config", cfgPath, "--status", "dead"); strings.Contains(out, "fir_cli") {
		t.Fatalf("still dead:\n%s", out)
	}
	// A bad rules file is refused at load, with its position.
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), []byte(strings.Replace(rules, "amount > 50", "amout > 50", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := run(ctx, []string{"ops", "--config", cfgPath, "--once"}, &stdout, &stderr); code == exitOK || !strings.Contains(stderr.String(), `rules.yaml:3:38: rule "big": when: unknown name amout`) {
		t.Fatalf("bad rules: exit %d, stderr %s", code, stderr.String())
	}
}
