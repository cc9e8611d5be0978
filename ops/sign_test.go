package ops

import (
	"net/http"
	"strconv"
	"testing"
	"time"
)

// The Standard Webhooks reference libraries' test vector.
func TestSignStandardWebhooksVector(t *testing.T) {
	key, err := DecodeSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	got := Sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`))
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Fatalf("signature %s, want %s", got, want)
	}
	// The prefix is optional, as in the reference libraries.
	if k2, _ := DecodeSecret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"); string(k2) != string(key) {
		t.Fatal("secret without whsec_ decodes differently")
	}
}

func TestVerify(t *testing.T) {
	const oldS, newS = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_c2x1aWNlLXRlc3QtbmV3LXNlY3JldC0xMjM0"
	kOld, _ := DecodeSecret(oldS)
	kNew, _ := DecodeSecret(newS)
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{"a":1}`)
	h := http.Header{}
	h.Set(HeaderID, "fir_1")
	h.Set(HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	h.Set(HeaderSignature, signatures([][]byte{kOld, kNew}, "fir_1", now, body))
	for _, s := range []string{oldS, newS} {
		if err := Verify(s, h, body, now, 5*time.Minute); err != nil {
			t.Fatalf("rotation: %s does not verify: %v", s, err)
		}
	}
	if err := Verify(newS, h, []byte(`{"a":2}`), now, 5*time.Minute); err == nil {
		t.Fatal("changed body verified")
	}
	if err := Verify(newS, h, body, now.Add(6*time.Minute), 5*time.Minute); err == nil {
		t.Fatal("old timestamp verified")
	}
	if err := Verify("whsec_b3RoZXItc2VjcmV0LW5vdC1vdXJzLTEyMzQ=", h, body, now, 5*time.Minute); err == nil {
		t.Fatal("unrelated secret verified")
	}
}

func TestBackoffSpansTheConfiguredSpan(t *testing.T) {
	p := RetryPolicy{Attempts: 8, Span: 27 * time.Hour}
	var total time.Duration
	for n := 1; n < p.Attempts; n++ {
		total += Backoff(p, n, func() float64 { return 0.5 })
	}
	if d := total - p.Span; d > time.Minute || d < -time.Minute {
		t.Fatalf("retries span %s, want %s", total, p.Span)
	}
	lo, hi := Backoff(p, 3, func() float64 { return 0 }), Backoff(p, 3, func() float64 { return 0.999 })
	if hi <= lo || float64(hi)/float64(lo) < 1.4 {
		t.Fatalf("no jitter: %s .. %s", lo, hi)
	}
}
