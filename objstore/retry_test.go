package objstore_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"syscall"
	"testing"
	"testing/iotest"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/objstore/objstoretest"
)

var fastPolicy = objstore.RetryPolicy{InitialBackoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond, MaxAttempts: 5}

func TestIsRetryable(t *testing.T) {
	s3err := func(code string, status int) error {
		return fmt.Errorf("put k: %w", minio.ErrorResponse{Code: code, StatusCode: status})
	}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"unavailable marker", fmt.Errorf("fake: %w", objstore.ErrUnavailable), true},
		{"SlowDown", s3err("SlowDown", 503), true},
		{"InternalError", s3err("InternalError", 500), true},
		{"ServiceUnavailable", s3err("ServiceUnavailable", 503), true},
		{"RequestTimeout", s3err("RequestTimeout", 400), true},
		{"bare 502", s3err("", 502), true},
		{"429", s3err("TooManyRequests", 429), true},
		{"AccessDenied", s3err("AccessDenied", 403), false},
		{"NoSuchBucket", s3err("NoSuchBucket", 404), false},
		{"InvalidArgument", s3err("InvalidArgument", 400), false},
		{"not exist", fmt.Errorf("get: %w", objstore.ErrNotExist), false},
		{"exists", fmt.Errorf("put: %w", objstore.ErrExists), false},
		{"invalid key", fmt.Errorf("put: %w", objstore.ErrInvalidKey), false},
		{"cancelled", fmt.Errorf("get: %w", context.Canceled), false},
		{"client timeout", &url.Error{Op: "Get", URL: "http://x", Err: context.DeadlineExceeded}, true},
		{"connection refused", &url.Error{Op: "Put", URL: "http://x", Err: &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}}, true},
		{"connection reset", fmt.Errorf("read: %w", syscall.ECONNRESET), true},
		{"unexpected EOF", fmt.Errorf("read body: %w", io.ErrUnexpectedEOF), true},
		{"unknown CA", &url.Error{Op: "Get", URL: "https://x", Err: x509.UnknownAuthorityError{}}, false},
		{"short body", &url.Error{Op: "Put", URL: "http://x", Err: errors.New("http: ContentLength=10 with Body length 5")}, false},
		{"plain error", errors.New("disk on fire"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := objstore.IsRetryable(tc.err); got != tc.want {
				t.Errorf("IsRetryable(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

func TestRetryPolicyBackoffIsBoundedFullJitter(t *testing.T) {
	p := objstore.RetryPolicy{InitialBackoff: 100 * time.Millisecond, MaxBackoff: 5 * time.Second, MaxAttempts: 20}
	for n, ceiling := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 4: 800 * time.Millisecond, 7: 5 * time.Second, 30: 5 * time.Second} {
		var maxSeen time.Duration
		for range 2000 {
			d := p.Backoff(n)
			if d < 0 || d >= ceiling {
				t.Fatalf("Backoff(%d) = %s, want in [0, %s)", n, d, ceiling)
			}
			maxSeen = max(maxSeen, d)
		}
		// Full jitter spreads over the whole range, not a band near the top.
		if maxSeen < ceiling/2 {
			t.Errorf("Backoff(%d): largest of 2000 draws %s, expected near %s", n, maxSeen, ceiling)
		}
	}
}

func TestRetryPolicyValidate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		p     objstore.RetryPolicy
		valid bool
	}{
		{"zero value means defaults", objstore.RetryPolicy{}, true},
		{"defaults", objstore.DefaultRetryPolicy(), true},
		{"negative attempts", objstore.RetryPolicy{MaxAttempts: -1}, false},
		{"max below initial", objstore.RetryPolicy{InitialBackoff: time.Second, MaxBackoff: time.Millisecond}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.p.Validate(); (err == nil) != tc.valid {
				t.Errorf("Validate() = %v, want valid %v", err, tc.valid)
			}
		})
	}
}

func TestRetryPolicyDoBounds(t *testing.T) {
	transient := fmt.Errorf("boom: %w", objstore.ErrUnavailable)
	t.Run("max attempts", func(t *testing.T) {
		calls := 0
		err := fastPolicy.Do(t.Context(), func(context.Context) error { calls++; return transient }, nil)
		if !errors.Is(err, objstore.ErrUnavailable) || calls != 5 {
			t.Errorf("err %v after %d calls, want the transient error after 5", err, calls)
		}
	})
	t.Run("max elapsed", func(t *testing.T) {
		p := objstore.RetryPolicy{InitialBackoff: 20 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, MaxAttempts: 1000, MaxElapsed: 100 * time.Millisecond}
		start := time.Now()
		calls := 0
		_ = p.Do(t.Context(), func(context.Context) error { calls++; return transient }, nil)
		if took := time.Since(start); took > time.Second || calls >= 1000 {
			t.Errorf("%d calls in %s, want the 100ms budget to stop it", calls, took)
		}
	})
	t.Run("context cancelled while waiting", func(t *testing.T) {
		p := objstore.RetryPolicy{InitialBackoff: time.Hour, MaxBackoff: time.Hour, MaxAttempts: 3}
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		calls := 0
		err := p.Do(ctx, func(context.Context) error { calls++; return transient }, nil)
		if err == nil || time.Since(start) > 10*time.Second {
			t.Errorf("err %v after %s, want a prompt failure", err, time.Since(start))
		}
		if calls > 2 {
			t.Errorf("%d calls, want at most 2", calls)
		}
	})
	t.Run("permanent error", func(t *testing.T) {
		calls := 0
		err := fastPolicy.Do(t.Context(), func(context.Context) error { calls++; return objstore.ErrNotExist }, nil)
		if !errors.Is(err, objstore.ErrNotExist) || calls != 1 {
			t.Errorf("err %v after %d calls, want ErrNotExist after 1", err, calls)
		}
	})
}

func TestRetryingBucket(t *testing.T) {
	transient := fmt.Errorf("connection reset: %w", objstore.ErrUnavailable)
	failTimes := func(h *objstoretest.HookBucket, op string, n int, err error) {
		left := n
		h.Before = func(o, _ string) error {
			if o == op && left > 0 {
				left--
				return err
			}
			return nil
		}
	}
	setup := func(t *testing.T) (*objstoretest.HookBucket, *objstore.Retrying, *prometheus.Registry) {
		h := objstoretest.NewHookBucket(objstoretest.NewLocal(t))
		reg := prometheus.NewRegistry()
		sm := objstore.NewMetrics(reg)
		return h, objstore.NewRetrying(h, fastPolicy, slog.New(slog.DiscardHandler), sm), reg
	}
	t.Run("transient failures are retried", func(t *testing.T) {
		h, r, reg := setup(t)
		failTimes(h, "put_if_absent", 3, transient)
		if err := r.PutIfAbsent(t.Context(), "k", []byte("v")); err != nil {
			t.Fatalf("put-if-absent: %v", err)
		}
		if got := h.Count("put_if_absent"); got != 4 {
			t.Errorf("%d calls, want 4", got)
		}
		if got := metricValue(t, reg, "sluice_sink_object_retries_total", map[string]string{"operation": "put_if_absent"}); got != 3 {
			t.Errorf("retries metric = %v, want 3", got)
		}
	})

	t.Run("permanent failures are not", func(t *testing.T) {
		h, r, _ := setup(t)
		if _, err := r.Get(t.Context(), "missing"); !objstore.IsNotExist(err) {
			t.Fatalf("get: %v", err)
		}
		if err := r.PutIfAbsent(t.Context(), "k", []byte("v")); err != nil {
			t.Fatal(err)
		}
		if err := r.PutIfAbsent(t.Context(), "k", []byte("v")); !objstore.IsExists(err) {
			t.Fatalf("second put-if-absent: %v", err)
		}
		denied := minio.ErrorResponse{Code: "AccessDenied", StatusCode: 403}
		failTimes(h, "delete", 1, denied)
		if err := r.Delete(t.Context(), "k"); !errors.As(err, &minio.ErrorResponse{}) {
			t.Fatalf("delete: %v", err)
		}
		for op, want := range map[string]int{"get": 1, "put_if_absent": 2, "delete": 1} {
			if got := h.Count(op); got != want {
				t.Errorf("%s: %d calls, want %d", op, got, want)
			}
		}
	})

	t.Run("seekable put is rewound", func(t *testing.T) {
		h, r, _ := setup(t)
		data := bytes.Repeat([]byte("0123456789"), 1000)
		src := bytes.NewReader(data)
		// The first attempt consumes part of the reader, then fails.
		first := true
		h.Before = func(op, _ string) error {
			if op == "put" && first {
				first = false
				io.CopyN(io.Discard, src, 1234)
				return transient
			}
			return nil
		}
		if err := r.Put(t.Context(), "obj", src, int64(len(data))); err != nil {
			t.Fatalf("put: %v", err)
		}
		rc, err := r.Get(t.Context(), "obj")
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(rc)
		rc.Close()
		if !bytes.Equal(got, data) {
			t.Errorf("stored %d bytes, want the %d written", len(got), len(data))
		}
	})

	t.Run("unseekable put gets one attempt", func(t *testing.T) {
		h, r, reg := setup(t)
		failTimes(h, "put", 1, transient)
		err := r.Put(t.Context(), "obj", iotest.OneByteReader(bytes.NewReader([]byte("abc"))), 3)
		if !errors.Is(err, objstore.ErrUnavailable) || h.Count("put") != 1 {
			t.Fatalf("err %v after %d calls, want the transient error after 1", err, h.Count("put"))
		}
		if got := metricValue(t, reg, "sluice_sink_object_unretryable_puts_total", nil); got != 1 {
			t.Errorf("unretryable puts = %v, want 1", got)
		}
	})

	t.Run("iter resumes without repeating keys", func(t *testing.T) {
		h, r, _ := setup(t)
		var want []string
		for i := range 7 {
			k := fmt.Sprintf("p/%02d", i)
			want = append(want, k)
			if err := r.Put(t.Context(), k, bytes.NewReader(nil), 0); err != nil {
				t.Fatal(err)
			}
		}
		h.IterFailAfter, h.IterErr = 3, transient
		var got []string
		if err := r.Iter(t.Context(), "p/", func(a objstore.ObjectAttrs) error { got = append(got, a.Key); return nil }); err != nil {
			t.Fatalf("iter: %v", err)
		}
		if !slices.Equal(got, want) || h.Count("iter") != 2 {
			t.Errorf("got %q in %d listings, want %q in 2", got, h.Count("iter"), want)
		}
		stop := errors.New("stop")
		calls := 0
		err := r.Iter(t.Context(), "p/", func(objstore.ObjectAttrs) error { calls++; return stop })
		if !errors.Is(err, stop) || calls != 1 {
			t.Errorf("callback error: err %v after %d calls, want it returned after 1, not retried", err, calls)
		}
	})
}

// metricValue sums the counter or histogram-count series of a metric whose
// labels include want.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue series
				}
			}
			switch {
			case m.GetCounter() != nil:
				sum += m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				sum += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return sum
}
