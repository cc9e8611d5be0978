package ops

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Standard Webhooks headers (https://www.standardwebhooks.com).
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// DecodeSecret decodes a Standard Webhooks secret: "whsec_" and the base64
// of the key (the prefix is optional, as in the reference libraries).
func DecodeSecret(s string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, "whsec_"))
	if err != nil {
		return nil, errors.New("not a whsec_ secret: want whsec_ and base64")
	}
	if len(k) < 16 {
		return nil, fmt.Errorf("key of %d bytes: want at least 16", len(k))
	}
	return k, nil
}

// Sign returns the "v1,<base64>" signature of one key over
// "<id>.<unix seconds>.<body>", HMAC-SHA256.
func Sign(key []byte, id string, ts time.Time, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write([]byte(strconv.FormatInt(ts.Unix(), 10)))
	m.Write([]byte{'.'})
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// signatures is the webhook-signature header value: one signature per key,
// space separated, so a receiver holding any of them (old or new during a
// rotation) verifies the delivery.
func signatures(keys [][]byte, id string, ts time.Time, body []byte) string {
	sigs := make([]string, len(keys))
	for i, k := range keys {
		sigs[i] = Sign(k, id, ts, body)
	}
	return strings.Join(sigs, " ")
}

// ErrBadSignature is wrapped by Verify's errors.
var ErrBadSignature = errors.New("webhook signature does not verify")

// Verify checks a delivery's headers and body against a receiver's
// secret, as a Standard Webhooks receiver does: one of the v1 signatures
// must match and the timestamp must be within tolerance of now.
func Verify(secret string, h http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	key, err := DecodeSecret(secret)
	if err != nil {
		return err
	}
	id, tsText, sigs := h.Get(HeaderID), h.Get(HeaderTimestamp), h.Get(HeaderSignature)
	if id == "" || tsText == "" || sigs == "" {
		return fmt.Errorf("%w: missing header", ErrBadSignature)
	}
	sec, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: timestamp %q", ErrBadSignature, tsText)
	}
	ts := time.Unix(sec, 0)
	if tolerance > 0 && (now.Sub(ts) > tolerance || ts.Sub(now) > tolerance) {
		return fmt.Errorf("%w: timestamp %s too far from now", ErrBadSignature, ts.UTC())
	}
	want := Sign(key, id, ts, body)
	for _, s := range strings.Fields(sigs) {
		if hmac.Equal([]byte(s), []byte(want)) {
			return nil
		}
	}
	return ErrBadSignature
}
