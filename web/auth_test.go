package web_test

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore/objstoretest"
	"github.com/sluicehq/sluice/web"
	"github.com/sluicehq/sluice/web/auth"
)

// Every endpoint against every kind of caller: 401 without valid
// credentials, 403 without the scope, 2xx with it.
func TestAuthMatrix(t *testing.T) {
	b := objstoretest.NewLocal(t)
	ts := startServer(t, b, web.Config{KeyCacheTTL: time.Nanosecond}, func(s *web.Server) { s.SetSummaries(objstoretest.NewLocal(t)) })
	ctx := context.Background()
	admin := ts.newKey(t, 0, 0, "admin")
	reader := ts.newKey(t, 0, 0, "read:events")
	appender := ts.newKey(t, 0, 0, "append:events")
	other := ts.newKey(t, 0, 0, "read:other", "append:other")
	revoked := ts.newKey(t, 0, 0, "admin")
	revokedID, _, _ := auth.SplitKey(revoked)
	readToken := mintToken(t, ts.URL, reader, `{"scopes":["read:events"],"filters":{"country":"DE"}}`)
	doomedToken := mintToken(t, ts.URL, revoked, `{"scopes":["read:events"]}`)
	if _, err := ts.Keys.Revoke(ctx, revokedID); err != nil {
		t.Fatal(err)
	}
	signer, err := auth.LoadSigner(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	readerID, _, _ := auth.SplitKey(reader)
	expired, err := signer.Sign(auth.Claims{KeyID: readerID, Scopes: auth.Scopes{"read:events"}, Expires: time.Now().Add(-time.Second).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	other2, _ := auth.NewSigner([]byte("0123456789abcdef0123456789abcdef"))
	forged, _ := other2.Sign(auth.Claims{KeyID: readerID, Scopes: auth.Scopes{"read:events"}, Expires: time.Now().Add(time.Hour).Unix()})
	wrongSecret := reader[:len(reader)-4] + "AAAA"

	type endpoint struct {
		name, method, path, body string
		scope                    func(cred string) bool // whether cred's scopes allow it
	}
	ingest := endpoint{"ingest", "POST", "/v1/tables/events/events", event("m"), nil}
	tokens := endpoint{"tokens", "POST", "/v1/tokens", `{"scopes":["read:events"]}`, nil}
	tables := endpoint{"tables", "GET", "/v1/tables", "", nil}
	queryG := endpoint{"query GET", "GET", "/v1/query?table=events&window=1m&from=2026-01-01T00:00:00Z&to=2026-01-01T00:05:00Z", "", nil}
	queryP := endpoint{"query POST", "POST", "/v1/query", `{"table":"events","window":"1m","from":"2026-01-01T00:00:00Z","to":"2026-01-01T00:05:00Z"}`, nil}
	endpoints := []endpoint{ingest, tokens, tables, queryG, queryP}

	// want[credential][endpoint] is the expected status.
	creds := []struct {
		name, cred string
		want       []int // ingest, tokens, tables, query GET, query POST
	}{
		{"none", "", []int{401, 401, 401, 401, 401}},
		{"garbage", "nope", []int{401, 401, 401, 401, 401}},
		{"wrong secret", wrongSecret, []int{401, 401, 401, 401, 401}},
		{"revoked key", revoked, []int{401, 401, 401, 401, 401}},
		{"token of a revoked key", doomedToken, []int{401, 401, 401, 401, 401}},
		{"expired token", expired, []int{401, 401, 401, 401, 401}},
		{"forged token", forged, []int{401, 401, 401, 401, 401}},
		{"admin", admin, []int{200, 200, 200, 200, 200}},
		{"read:events", reader, []int{403, 200, 200, 200, 200}},
		{"append:events", appender, []int{200, 403, 200, 403, 403}},
		{"other table", other, []int{403, 403, 200, 403, 403}},
		{"read token", readToken, []int{403, 403, 200, 200, 200}},
	}
	for _, c := range creds {
		for i, e := range endpoints {
			code, hdr, raw := do(t, e.method, ts.URL+e.path, c.cred, []byte(e.body))
			if code != c.want[i] {
				t.Errorf("%s on %s: got %d (%.200s), want %d", c.name, e.name, code, raw, c.want[i])
			}
			if code == 401 && hdr.Get("WWW-Authenticate") == "" {
				t.Errorf("%s on %s: 401 without WWW-Authenticate", c.name, e.name)
			}
		}
	}
	// A token in the URL works for reads; a key in the URL does not.
	if code, _, raw := do(t, "GET", ts.URL+"/v1/tables?token="+readToken, "", nil); code != 200 {
		t.Errorf("token in URL: %d %s", code, raw)
	}
	if code, _, _ := do(t, "GET", ts.URL+"/v1/tables?token="+reader, "", nil); code != 401 {
		t.Errorf("key in URL: %d, want 401", code)
	}
	// A token may not be minted with scopes the key lacks, nor by a token.
	if code, _, _ := do(t, "POST", ts.URL+"/v1/tokens", reader, []byte(`{"scopes":["read:*"]}`)); code != 403 {
		t.Errorf("wider token: %d, want 403", code)
	}
	if code, _, _ := do(t, "POST", ts.URL+"/v1/tokens", admin, []byte(`{"scopes":["append:events"]}`)); code != 400 {
		t.Errorf("append token: %d, want 400", code)
	}
}

// Each key has its own bucket: past its burst a key gets 429 with
// Retry-After, another key is unaffected, and the key recovers.
func TestRateLimitPerKey(t *testing.T) {
	b := objstoretest.NewLocal(t)
	ts := startServer(t, b, web.Config{}, nil)
	slow := ts.newKey(t, 2, 3, "append:events")
	fast := ts.newKey(t, 0, 0, "append:events")
	url := ts.URL + "/v1/tables/events/events?wait=false"
	var codes []int
	var retry string
	for i := range 5 {
		code, hdr, _ := do(t, "POST", url, slow, []byte(event("s"+strconv.Itoa(i))))
		codes = append(codes, code)
		if code == http.StatusTooManyRequests {
			retry = hdr.Get("Retry-After")
		}
	}
	if codes[0] != 202 || codes[4] != 429 {
		t.Fatalf("codes %v: want 202 first and 429 past the burst", codes)
	}
	if n, err := strconv.Atoi(retry); err != nil || n < 1 {
		t.Fatalf("Retry-After %q", retry)
	}
	if code, _, _ := do(t, "POST", url, fast, []byte(event("f"))); code != 202 {
		t.Fatalf("another key: %d", code)
	}
	time.Sleep(time.Second)
	if code, _, _ := do(t, "POST", url, slow, []byte(event("s-late"))); code != 202 {
		t.Fatalf("after a second: %d", code)
	}
}

// Keys are stored hashed: the stored object holds the id and scopes but
// not the secret, and a listed key shows only its prefix.
func TestKeysStoredHashed(t *testing.T) {
	b := objstoretest.NewLocal(t)
	ks, err := auth.NewKeyStore(b)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	k, full, err := ks.Create(ctx, "ci", auth.Scopes{"read:events"}, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	id, secret, err := auth.SplitKey(full)
	if err != nil || id != k.ID {
		t.Fatalf("split %q: %v", full, err)
	}
	for _, key := range objstoretest.ListKeys(t, b, lake.APIKeysRoot) {
		rc, _ := b.Get(ctx, key)
		buf := make([]byte, 4096)
		n, _ := rc.Read(buf)
		rc.Close()
		if strings.Contains(string(buf[:n]), secret) {
			t.Fatalf("%s holds the secret", key)
		}
	}
	if _, err := ks.Verify(ctx, full); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ks.Create(ctx, "x", nil, 0, 0); err == nil {
		t.Fatal("a key without scopes was created")
	}
	if _, _, err := ks.Create(ctx, "x", auth.Scopes{"write:events"}, 0, 0); err == nil {
		t.Fatal("a bad scope was accepted")
	}
	list, err := ks.List(ctx)
	if err != nil || len(list) != 1 || list[0].ID != k.ID {
		t.Fatalf("list: %v %v", list, err)
	}
}
