package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
)

// The lake holds one object per API key (lake.APIKeyKey): its id, scopes,
// limits and the SHA-256 of its secret (never the secret). Keys are created
// with a conditional create and revoked with a conditional replace.

// keyPrefix starts every API key; the id after it is shown in listings and
// logs, the secret after the second "_" only once, at creation.
const keyPrefix = "sk_"

// Key is a stored API key.
type Key struct {
	ID         string    `json:"id"` // "sk_" and 12 hex digits: the visible prefix
	Name       string    `json:"name,omitempty"`
	Scopes     Scopes    `json:"scopes"`
	RatePerSec float64   `json:"rate_per_sec,omitempty"` // requests per second; 0: the server's default
	Burst      int       `json:"burst,omitempty"`
	SecretHash string    `json:"secret_hash"` // hex SHA-256 of the secret: secrets are random, so no slow hash is needed
	Created    time.Time `json:"created"`
	Revoked    time.Time `json:"revoked,omitzero"`
}

// Errors of the key store.
var (
	ErrNoKey      = errors.New("no such key")
	ErrBadKey     = errors.New("malformed API key")
	ErrRevoked    = errors.New("key revoked")
	ErrWrongKey   = errors.New("wrong secret")
	ErrNeedScopes = errors.New("a key needs at least one scope")
)

// KeyStore keeps keys in the lake's bucket. Lookups are cached briefly, so
// a revocation takes effect within CacheTTL.
type KeyStore struct {
	b   objstore.ConditionalBucket
	ttl time.Duration
	now func() time.Time

	mu    sync.Mutex
	cache map[string]cachedKey
}

type cachedKey struct {
	k   Key
	err error
	at  time.Time
}

// CacheTTL is how long a key lookup is trusted.
const CacheTTL = 5 * time.Second

// SetCacheTTL changes how long lookups are trusted (tests: a nanosecond).
func (s *KeyStore) SetCacheTTL(d time.Duration) { s.ttl = d }

// NewKeyStore keeps keys in b, which must support conditional writes.
func NewKeyStore(b objstore.Bucket) (*KeyStore, error) {
	cb, ok := b.(objstore.ConditionalBucket)
	if !ok {
		return nil, fmt.Errorf("key store: bucket %s cannot replace objects conditionally", b.Name())
	}
	return &KeyStore{b: cb, ttl: CacheTTL, now: time.Now, cache: map[string]cachedKey{}}, nil
}

// Create stores a new key and returns it with its full secret, which is
// not kept anywhere: show it once.
func (s *KeyStore) Create(ctx context.Context, name string, scopes Scopes, ratePerSec float64, burst int) (Key, string, error) {
	if len(scopes) == 0 {
		return Key{}, "", ErrNeedScopes
	}
	for _, sc := range scopes {
		if _, err := ParseScope(string(sc)); err != nil {
			return Key{}, "", err
		}
	}
	if ratePerSec < 0 || burst < 0 {
		return Key{}, "", errors.New("rate and burst must not be negative")
	}
	var id [6]byte
	var secret [24]byte
	if _, err := rand.Read(id[:]); err != nil {
		return Key{}, "", err
	}
	if _, err := rand.Read(secret[:]); err != nil {
		return Key{}, "", err
	}
	k := Key{
		ID: keyPrefix + hex.EncodeToString(id[:]), Name: name, Scopes: scopes,
		RatePerSec: ratePerSec, Burst: burst, Created: s.now().UTC(),
	}
	sec := base64.RawURLEncoding.EncodeToString(secret[:])
	k.SecretHash = hashSecret(sec)
	data, err := json.Marshal(k)
	if err != nil {
		return Key{}, "", err
	}
	if err := s.b.PutIfAbsent(ctx, lake.APIKeyKey(k.ID), data); err != nil {
		return Key{}, "", fmt.Errorf("store key %s: %w", k.ID, err)
	}
	return k, k.ID + "_" + sec, nil
}

func hashSecret(sec string) string {
	h := sha256.Sum256([]byte(sec))
	return hex.EncodeToString(h[:])
}

// List returns every key, revoked ones included, in id order.
func (s *KeyStore) List(ctx context.Context) ([]Key, error) {
	var out []Key
	err := s.b.Iter(ctx, lake.APIKeysRoot, func(a objstore.ObjectAttrs) error {
		id := strings.TrimSuffix(strings.TrimPrefix(a.Key, lake.APIKeysRoot), ".json")
		k, _, err := s.read(ctx, id)
		if err != nil {
			return err
		}
		out = append(out, k)
		return nil
	})
	return out, err
}

func (s *KeyStore) read(ctx context.Context, id string) (Key, string, error) {
	data, ver, err := s.b.GetVersion(ctx, lake.APIKeyKey(id))
	if objstore.IsNotExist(err) {
		return Key{}, "", fmt.Errorf("%w: %s", ErrNoKey, id)
	}
	if err != nil {
		return Key{}, "", fmt.Errorf("read key %s: %w", id, err)
	}
	var k Key
	if err := json.Unmarshal(data, &k); err != nil {
		return Key{}, "", fmt.Errorf("read key %s: %w", id, err)
	}
	return k, ver, nil
}

// Revoke marks the key revoked; requests with it (and tokens it signed)
// are refused from then on (within CacheTTL on other servers).
func (s *KeyStore) Revoke(ctx context.Context, id string) (Key, error) {
	if !validID(id) {
		return Key{}, fmt.Errorf("%w: %q", ErrBadKey, id)
	}
	for range 5 {
		k, ver, err := s.read(ctx, id)
		if err != nil {
			return Key{}, err
		}
		if !k.Revoked.IsZero() {
			return k, nil
		}
		k.Revoked = s.now().UTC()
		data, _ := json.Marshal(k)
		err = s.b.PutIfMatch(ctx, lake.APIKeyKey(id), data, ver)
		if objstore.IsChanged(err) {
			continue
		}
		if err != nil {
			return Key{}, fmt.Errorf("revoke key %s: %w", id, err)
		}
		s.mu.Lock()
		delete(s.cache, id)
		s.mu.Unlock()
		return k, nil
	}
	return Key{}, fmt.Errorf("revoke key %s: changed too often", id)
}

func validID(id string) bool {
	if !strings.HasPrefix(id, keyPrefix) || len(id) != len(keyPrefix)+12 {
		return false
	}
	_, err := hex.DecodeString(id[len(keyPrefix):])
	return err == nil
}

// SplitKey cuts an API key into its id and secret.
func SplitKey(full string) (id, secret string, err error) {
	// The secret is base64url and may itself hold "_": cut by length.
	const idLen = len(keyPrefix) + 12
	if len(full) != idLen+1+32 || full[idLen] != '_' || !validID(full[:idLen]) {
		return "", "", ErrBadKey
	}
	return full[:idLen], full[idLen+1:], nil
}

// lookup returns the live key id, cached for CacheTTL.
func (s *KeyStore) lookup(ctx context.Context, id string) (Key, error) {
	now := s.now()
	s.mu.Lock()
	c, ok := s.cache[id]
	s.mu.Unlock()
	if ok && now.Sub(c.at) < s.ttl {
		return c.k, c.err
	}
	k, _, err := s.read(ctx, id)
	if err == nil && !k.Revoked.IsZero() {
		err = fmt.Errorf("%w: %s", ErrRevoked, id)
	}
	if err != nil && !errors.Is(err, ErrNoKey) && !errors.Is(err, ErrRevoked) {
		return Key{}, err // a store error is not cached
	}
	s.mu.Lock()
	if len(s.cache) > 10_000 {
		clear(s.cache) // bounded: guessed ids must not grow it
	}
	s.cache[id] = cachedKey{k: k, err: err, at: now}
	s.mu.Unlock()
	return k, err
}

// Verify returns the live key whose full text is full.
func (s *KeyStore) Verify(ctx context.Context, full string) (Key, error) {
	id, sec, err := SplitKey(full)
	if err != nil {
		return Key{}, err
	}
	k, err := s.lookup(ctx, id)
	if err != nil {
		return Key{}, err
	}
	if subtle.ConstantTimeCompare([]byte(hashSecret(sec)), []byte(k.SecretHash)) != 1 {
		return Key{}, ErrWrongKey
	}
	return k, nil
}

// cachedOnly returns a key from the cache without reading the store.
func (s *KeyStore) cachedOnly(id string) (Key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.cache[id]
	if !ok {
		return Key{}, ErrNoKey
	}
	return c.k, c.err
}
