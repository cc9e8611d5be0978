package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
)

const tokenPrefix = "st_"

// MaxTokenTTL bounds a token's life: tokens are for embedding a page, and
// a leaked one should not outlive the day.
const MaxTokenTTL = 24 * time.Hour

// maxTokenBytes bounds what ParseToken looks at.
const maxTokenBytes = 4096

// Claims are what a token grants: read scopes of the key that signed it,
// fixed filters every query made with it gets, and an expiry.
type Claims struct {
	KeyID   string            `json:"kid"`
	Scopes  Scopes            `json:"scp"`
	Filters map[string]string `json:"flt,omitempty"` // dimension -> value
	Expires int64             `json:"exp"`           // unix seconds
}

// Token errors.
var (
	ErrBadToken     = errors.New("malformed token")
	ErrBadSignature = errors.New("token signature does not match")
	ErrExpired      = errors.New("token expired")
)

// Signer signs and checks tokens.
type Signer struct{ secret []byte }

// NewSigner returns a signer with secret (at least 32 bytes).
func NewSigner(secret []byte) (*Signer, error) {
	if len(secret) < 32 {
		return nil, errors.New("signing secret must be at least 32 bytes")
	}
	return &Signer{secret: secret}, nil
}

// LoadSigner reads the lake's signing secret, creating it on first use.
func LoadSigner(ctx context.Context, b objstore.Bucket) (*Signer, error) {
	var fresh [32]byte
	if _, err := rand.Read(fresh[:]); err != nil {
		return nil, err
	}
	err := b.PutIfAbsent(ctx, lake.WebSigningKey, []byte(base64.RawURLEncoding.EncodeToString(fresh[:])))
	if err != nil && !objstore.IsExists(err) {
		return nil, fmt.Errorf("create signing key: %w", err)
	}
	rc, err := b.Get(ctx, lake.WebSigningKey)
	if err != nil {
		return nil, fmt.Errorf("read signing key: %w", err)
	}
	defer rc.Close()
	var buf [128]byte
	n, _ := rc.Read(buf[:])
	secret, err := base64.RawURLEncoding.DecodeString(strings.TrimSpace(string(buf[:n])))
	if err != nil {
		return nil, fmt.Errorf("read signing key: %w", err)
	}
	return NewSigner(secret)
}

// Sign returns the token for c. Only read scopes may be put in a token.
func (s *Signer) Sign(c Claims) (string, error) {
	for _, sc := range c.Scopes {
		if a, _, _ := strings.Cut(string(sc), ":"); a != ActionRead {
			return "", fmt.Errorf("%w: a token may hold read scopes only, not %q", ErrBadScope, sc)
		}
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	p := base64.RawURLEncoding.EncodeToString(payload)
	return tokenPrefix + p + "." + base64.RawURLEncoding.EncodeToString(s.mac(p)), nil
}

func (s *Signer) mac(p string) []byte {
	m := hmac.New(sha256.New, s.secret)
	m.Write([]byte(p))
	return m.Sum(nil)
}

// IsToken reports whether credential looks like a token rather than a key.
func IsToken(credential string) bool { return strings.HasPrefix(credential, tokenPrefix) }

// Parse checks the token's signature, shape and expiry at now.
func (s *Signer) Parse(tok string, now time.Time) (Claims, error) {
	if len(tok) > maxTokenBytes || !strings.HasPrefix(tok, tokenPrefix) {
		return Claims{}, ErrBadToken
	}
	p, sig, ok := strings.Cut(tok[len(tokenPrefix):], ".")
	if !ok {
		return Claims{}, ErrBadToken
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		return Claims{}, ErrBadToken
	}
	if !hmac.Equal(got, s.mac(p)) {
		return Claims{}, ErrBadSignature
	}
	payload, err := base64.RawURLEncoding.DecodeString(p)
	if err != nil {
		return Claims{}, ErrBadToken
	}
	var c Claims
	if err := json.Unmarshal(payload, &c); err != nil {
		return Claims{}, ErrBadToken
	}
	if !validID(c.KeyID) || len(c.Scopes) == 0 {
		return Claims{}, ErrBadToken
	}
	for _, sc := range c.Scopes {
		if _, err := ParseScope(string(sc)); err != nil || !strings.HasPrefix(string(sc), ActionRead+":") {
			return Claims{}, ErrBadToken
		}
	}
	if now.Unix() >= c.Expires {
		return Claims{}, ErrExpired
	}
	return c, nil
}
