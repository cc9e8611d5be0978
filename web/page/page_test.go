package page

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

// The page names each asset with its hash; an asset fetched by that name
// is cached for a year, the page itself revalidated by ETag (304).
func TestAssetsCachedByHash(t *testing.T) {
	h, err := New()
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	h.Mount(mux)
	get := func(path, etag string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", path, nil)
		if etag != "" {
			r.Header.Set("If-None-Match", etag)
		}
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		return w
	}
	page := get("/", "")
	if page.Code != 200 || page.Header().Get("Cache-Control") != "no-cache" || page.Header().Get("ETag") == "" ||
		!strings.Contains(page.Header().Get("Content-Security-Policy"), "script-src 'self'") {
		t.Fatalf("page: %d %v", page.Code, page.Header())
	}
	if w := get("/", page.Header().Get("ETag")); w.Code != http.StatusNotModified || w.Body.Len() != 0 {
		t.Fatalf("revalidation: %d", w.Code)
	}
	refs := regexp.MustCompile(`/assets/([^"?]+)\?v=([0-9a-f]+)`).FindAllStringSubmatch(page.Body.String(), -1)
	if len(refs) != 4 {
		t.Fatalf("page names %d assets: %v", len(refs), refs)
	}
	for _, ref := range refs {
		w := get(ref[0], "")
		if w.Code != 200 || w.Header().Get("Cache-Control") != "public, max-age=31536000, immutable" || w.Body.Len() == 0 {
			t.Fatalf("%s: %d %v", ref[0], w.Code, w.Header())
		}
		if strings.HasSuffix(ref[1], ".js") && !strings.HasPrefix(w.Header().Get("Content-Type"), "text/javascript") {
			t.Fatalf("%s: Content-Type %q", ref[1], w.Header().Get("Content-Type"))
		}
		if w := get("/assets/"+ref[1]+"?v=stale", ""); w.Header().Get("Cache-Control") != "no-cache" {
			t.Fatalf("%s with another hash is cached for long", ref[1])
		}
	}
	if w := get("/assets/vendor/uplot/LICENSE", ""); w.Code != 200 || !strings.Contains(w.Body.String(), "MIT") {
		t.Fatal("uPlot's licence is not served with it")
	}
	for _, p := range []string{"/assets/nope.js", "/assets/../page.go", "/assets/index.html"} {
		if w := get(p, ""); w.Code != 404 && w.Code != 301 && w.Code != 307 {
			t.Fatalf("%s: %d", p, w.Code)
		}
	}
}
