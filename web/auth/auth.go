package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Config of the authenticator.
type Config struct {
	// RatePerSec and Burst limit each key's requests (a token counts
	// against the key that signed it) unless the key sets its own:
	// 50 requests per second with bursts of 100 by default.
	RatePerSec float64
	Burst      int
	// Anonymous are the scopes of requests without credentials: none by
	// default. `sluice dev` grants nothing either; its page gets a token.
	Anonymous Scopes
}

// Defaults for Config.
const (
	DefaultRatePerSec = 50
	DefaultBurst      = 100
)

// Principal is an authenticated caller.
type Principal struct {
	ID      string // the key id ("sk_..."), also for a token it signed; "anonymous"
	Scopes  Scopes
	Filters map[string]string // fixed filters of a token: every query gets them
	Token   bool
}

type principalKey struct{}

// FromContext returns the caller of an authenticated request.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// WithPrincipal returns ctx carrying p (tests, internal calls).
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// Allowed reports whether the request's caller may do action on table.
func Allowed(ctx context.Context, action, table string) bool {
	p, ok := FromContext(ctx)
	return ok && p.Scopes.Allows(action, table)
}

// ErrNoCredentials: the request carries neither a key nor a token.
var ErrNoCredentials = errors.New("no credentials: send Authorization: Bearer <key or token>")

// Authenticator checks credentials and rate limits.
type Authenticator struct {
	keys   *KeyStore
	signer *Signer
	cfg    Config
	logger *slog.Logger
	now    func() time.Time

	mu       sync.Mutex
	limiters map[string]*limiter
}

// NewAuthenticator checks keys in keys and tokens with signer.
func NewAuthenticator(cfg Config, keys *KeyStore, signer *Signer, logger *slog.Logger) *Authenticator {
	if cfg.RatePerSec <= 0 {
		cfg.RatePerSec = DefaultRatePerSec
	}
	if cfg.Burst <= 0 {
		cfg.Burst = DefaultBurst
	}
	return &Authenticator{keys: keys, signer: signer, cfg: cfg, logger: logger, now: time.Now, limiters: map[string]*limiter{}}
}

// Signer signs tokens for callers that may mint them.
func (a *Authenticator) Signer() *Signer { return a.signer }

// credential takes the key or token from Authorization: Bearer, or a
// token (never a key: URLs end up in logs and histories) from ?token=.
func credential(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, cred, ok := strings.Cut(h, " ")
		if ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(cred)
		}
		return h // malformed: refused as a bad credential, not taken as none
	}
	if t := r.URL.Query().Get("token"); IsToken(t) {
		return t
	}
	return ""
}

// Authenticate identifies the request's caller.
func (a *Authenticator) Authenticate(r *http.Request) (Principal, error) {
	cred := credential(r)
	if cred == "" {
		if len(a.cfg.Anonymous) > 0 {
			return Principal{ID: "anonymous", Scopes: a.cfg.Anonymous}, nil
		}
		return Principal{}, ErrNoCredentials
	}
	if IsToken(cred) {
		c, err := a.signer.Parse(cred, a.now())
		if err != nil {
			return Principal{}, err
		}
		k, err := a.keys.lookup(r.Context(), c.KeyID)
		if err != nil {
			return Principal{}, fmt.Errorf("token signed by %s: %w", c.KeyID, err)
		}
		// A token never grants more than its key holds now.
		var scopes Scopes
		for _, s := range c.Scopes {
			if k.Scopes.Covers(Scopes{s}) {
				scopes = append(scopes, s)
			}
		}
		return Principal{ID: c.KeyID, Scopes: scopes, Filters: c.Filters, Token: true}, nil
	}
	k, err := a.keys.Verify(r.Context(), cred)
	if err != nil {
		return Principal{}, err
	}
	return Principal{ID: k.ID, Scopes: k.Scopes}, nil
}

// Middleware authenticates every request (401 otherwise), applies the
// caller's rate limit (429 with Retry-After) and passes the principal on
// in the context; handlers check scopes with Allowed (403).
func (a *Authenticator) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := a.Authenticate(r)
		if err != nil {
			if isStoreError(err) {
				a.logger.Warn("authentication failed on the store", "err", err)
				WriteError(w, http.StatusServiceUnavailable, "cannot check credentials now")
				return
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="sluice"`)
			WriteError(w, http.StatusUnauthorized, err.Error())
			return
		}
		if wait := a.limit(p); wait > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
			WriteError(w, http.StatusTooManyRequests, fmt.Sprintf("rate limit of %s exceeded", p.ID))
			return
		}
		next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
	})
}

func isStoreError(err error) bool {
	for _, e := range []error{ErrNoCredentials, ErrBadKey, ErrNoKey, ErrRevoked, ErrWrongKey, ErrBadToken, ErrBadSignature, ErrExpired} {
		if errors.Is(err, e) {
			return false
		}
	}
	return true
}

// WriteError writes {"error": msg} with code.
func WriteError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// Forbid writes the 403 for action on table.
func Forbid(w http.ResponseWriter, action, table string) {
	what := action
	if table != "" {
		what += ":" + table
	}
	WriteError(w, http.StatusForbidden, "the credentials lack the scope "+what)
}

// limiter is a token bucket.
type limiter struct {
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
}

// limit takes one request from p's bucket and returns 0, or how long until
// one would be available.
func (a *Authenticator) limit(p Principal) time.Duration {
	rate, burst := a.cfg.RatePerSec, float64(a.cfg.Burst)
	if k, err := a.keys.cachedOnly(p.ID); err == nil {
		if k.RatePerSec > 0 {
			rate = k.RatePerSec
		}
		if k.Burst > 0 {
			burst = float64(k.Burst)
		}
	}
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	l := a.limiters[p.ID]
	if l == nil {
		if len(a.limiters) > 100_000 {
			clear(a.limiters)
		}
		l = &limiter{tokens: burst, last: now}
		a.limiters[p.ID] = l
	}
	l.rate, l.burst = rate, burst
	l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	l.last = now
	if l.tokens >= 1 {
		l.tokens--
		return 0
	}
	return time.Duration((1 - l.tokens) / l.rate * float64(time.Second))
}
