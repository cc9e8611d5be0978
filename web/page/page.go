package page

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
)

//go:embed assets
var assets embed.FS

// file is one embedded asset.
type file struct {
	body  []byte
	etag  string // strong: a hash of the bytes
	ctype string
	hash  string // short hash, the ?v= of its URL in the page
}

// Handler serves / (the page) and /assets/*.
type Handler struct {
	files map[string]*file // by path under assets/
	index *file
}

// New loads the embedded assets. The page refers to each asset with its
// hash (?v=...), so assets can be cached for a year and a new binary's
// page still fetches new ones; the page itself is revalidated each time.
func New() (*Handler, error) {
	h := &Handler{files: map[string]*file{}}
	err := fs.WalkDir(assets, "assets", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := assets.ReadFile(p)
		if err != nil {
			return err
		}
		rel := strings.TrimPrefix(p, "assets/")
		h.files[rel] = newFile(rel, body)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load page assets: %w", err)
	}
	idx, ok := h.files["index.html"]
	if !ok {
		return nil, fmt.Errorf("load page assets: index.html missing")
	}
	body := idx.body
	for rel, f := range h.files {
		body = bytes.ReplaceAll(body, []byte("{{v:"+rel+"}}"), []byte("/assets/"+rel+"?v="+f.hash))
	}
	h.index = newFile("index.html", body)
	return h, nil
}

func newFile(rel string, body []byte) *file {
	sum := sha256.Sum256(body)
	ct := mime.TypeByExtension(path.Ext(rel))
	if ct == "" {
		ct = "application/octet-stream"
	}
	return &file{body: body, etag: `"` + hex.EncodeToString(sum[:16]) + `"`, ctype: ct, hash: hex.EncodeToString(sum[:6])}
}

// Mount adds GET / and GET /assets/ to mux.
func (h *Handler) Mount(mux interface {
	Handle(pattern string, h http.Handler)
}) {
	mux.Handle("GET /{$}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.serve(w, r, h.index, "no-cache")
	}))
	mux.Handle("GET /assets/{path...}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, ok := h.files[r.PathValue("path")]
		if !ok || r.PathValue("path") == "index.html" {
			http.NotFound(w, r)
			return
		}
		cache := "no-cache"
		if r.URL.Query().Get("v") == f.hash {
			cache = "public, max-age=31536000, immutable"
		}
		h.serve(w, r, f, cache)
	}))
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request, f *file, cache string) {
	hd := w.Header()
	hd.Set("ETag", f.etag)
	hd.Set("Cache-Control", cache)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	// Only the page's own scripts and the API; it may be framed (embedding
	// is what its tokens are for).
	hd.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; script-src 'self'; style-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'")
	if match := r.Header.Get("If-None-Match"); match != "" {
		for tag := range strings.SplitSeq(match, ",") {
			if t := strings.TrimSpace(tag); t == f.etag || t == "W/"+f.etag || t == "*" {
				w.WriteHeader(http.StatusNotModified)
				return
			}
		}
	}
	hd.Set("Content-Type", f.ctype)
	hd.Set("Content-Length", fmt.Sprint(len(f.body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(f.body)
	}
}
