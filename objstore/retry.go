package objstore

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/prometheus/client_golang/prometheus"
)

// ErrUnavailable marks an error as transient: the store could not answer now
// and the same call may succeed later. Wrap it in errors of test fakes and
// other backends to make them retryable.
var ErrUnavailable = errors.New("object store unavailable")

// RetryPolicy is bounded exponential backoff with full jitter: before retry
// n (1-based) it sleeps a uniform random time in [0, min(MaxBackoff,
// InitialBackoff*2^(n-1))). Full jitter spreads the retries of many writers
// hit by the same outage instead of having them return in lockstep.
type RetryPolicy struct {
	// InitialBackoff caps the first sleep (default 100ms).
	InitialBackoff time.Duration `yaml:"initial_backoff"`
	// MaxBackoff caps every sleep (default 5s).
	MaxBackoff time.Duration `yaml:"max_backoff"`
	// MaxAttempts counts the first call too (default 10; 1 disables retries).
	MaxAttempts int `yaml:"max_attempts"`
	// MaxElapsed stops retrying once this much time has passed since the
	// first attempt (0: no limit besides MaxAttempts and the context).
	MaxElapsed time.Duration `yaml:"max_elapsed"`
}

// DefaultRetryPolicy returns the defaults documented on RetryPolicy.
func DefaultRetryPolicy() RetryPolicy {
	return RetryPolicy{InitialBackoff: 100 * time.Millisecond, MaxBackoff: 5 * time.Second, MaxAttempts: 10}
}

// withDefaults fills zero fields.
func (p RetryPolicy) withDefaults() RetryPolicy {
	d := DefaultRetryPolicy()
	if p.InitialBackoff == 0 {
		p.InitialBackoff = d.InitialBackoff
	}
	if p.MaxBackoff == 0 {
		p.MaxBackoff = d.MaxBackoff
	}
	if p.MaxAttempts == 0 {
		p.MaxAttempts = d.MaxAttempts
	}
	return p
}

// Validate rejects negative values and a cap below the first backoff.
func (p RetryPolicy) Validate() error {
	if p.InitialBackoff < 0 || p.MaxBackoff < 0 || p.MaxAttempts < 0 || p.MaxElapsed < 0 {
		return fmt.Errorf("retry policy: negative value in %+v", p)
	}
	q := p.withDefaults()
	if q.MaxBackoff < q.InitialBackoff {
		return fmt.Errorf("retry policy: max_backoff %s is below initial_backoff %s", q.MaxBackoff, q.InitialBackoff)
	}
	return nil
}

// Backoff returns the sleep before retry n (1-based).
func (p RetryPolicy) Backoff(n int) time.Duration {
	p = p.withDefaults()
	ceiling := p.InitialBackoff
	for i := 1; i < n && ceiling < p.MaxBackoff; i++ {
		ceiling *= 2
	}
	ceiling = min(ceiling, p.MaxBackoff)
	if ceiling <= 0 {
		return 0
	}
	return rand.N(ceiling)
}

// Do calls fn until it succeeds, fails with an error IsRetryable rejects, or
// the policy or ctx runs out; it returns fn's last error. onRetry, if not
// nil, is told about each failure that will be retried and the sleep before it.
func (p RetryPolicy) Do(ctx context.Context, fn func(ctx context.Context) error, onRetry func(attempt int, err error, sleep time.Duration)) error {
	p = p.withDefaults()
	start := time.Now()
	for attempt := 1; ; attempt++ {
		err := fn(ctx)
		if err == nil || !IsRetryable(err) || attempt >= p.MaxAttempts || ctx.Err() != nil {
			return err
		}
		sleep := p.Backoff(attempt)
		if p.MaxElapsed > 0 && time.Since(start)+sleep > p.MaxElapsed {
			return err
		}
		if onRetry != nil {
			onRetry(attempt, err, sleep)
		}
		t := time.NewTimer(sleep)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// retryableS3Codes are S3 error codes that say "try again later".
var retryableS3Codes = map[string]bool{
	"SlowDown": true, "SlowDownWrite": true, "SlowDownRead": true,
	"RequestTimeout": true, "InternalError": true, "ServiceUnavailable": true,
	"Throttling": true, "ThrottlingException": true, "RequestLimitExceeded": true,
	"RequestThrottled": true, "TooManyRequests": true, "RequestError": true,
	"ExpiredToken": true, "ExpiredTokenException": true, // credentials refresh on the next call
}

// IsRetryable reports whether err is transient: network errors and timeouts,
// 5xx, 408 and 429 answers and S3's throttling and internal-error codes, and
// anything wrapping ErrUnavailable. Missing and existing objects, invalid
// keys, cancelled contexts and other 4xx answers (AccessDenied,
// NoSuchBucket, ...) are permanent.
func IsRetryable(err error) bool {
	switch {
	case err == nil,
		errors.Is(err, context.Canceled),
		errors.Is(err, ErrNotExist),
		errors.Is(err, ErrExists),
		errors.Is(err, ErrChanged),
		errors.Is(err, ErrInvalidKey):
		return false
	case errors.Is(err, ErrUnavailable):
		return true
	}
	var resp minio.ErrorResponse
	if errors.As(err, &resp) && (resp.Code != "" || resp.StatusCode != 0) {
		if retryableS3Codes[resp.Code] {
			return true
		}
		s := resp.StatusCode
		return s >= 500 || s == http.StatusTooManyRequests || s == http.StatusRequestTimeout
	}
	// A deadline that is not the caller's (an HTTP client timeout) is
	// transient; the caller's own is checked by Do before retrying.
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	// TLS trust and protocol mistakes are configuration errors: retrying
	// cannot fix them.
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	// So is a reader shorter than the size it was announced with.
	if errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci) ||
		strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") ||
		strings.Contains(err.Error(), "with Body length") {
		return false
	}
	var ne net.Error // includes *url.Error from the HTTP client
	if errors.As(err, &ne) {
		return true
	}
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ETIMEDOUT)
}

// Retrying is a Bucket that retries the calls of another by a RetryPolicy.
//
// Put can only be retried when its reader is an io.Seeker: it is rewound to
// where it stood before the first attempt. A plain io.Reader cannot be read
// twice, so such a Put gets exactly one attempt (counted in
// sluice_sink_object_unretryable_puts_total); pass a bytes.Reader or an
// *os.File to make uploads retryable. Get and GetRange retry opening the
// object, not reads from the opened body. Iter retries a failed listing and
// skips the keys it already passed to fn, so fn sees every key once.
type Retrying struct {
	b       Bucket
	policy  RetryPolicy
	logger  *slog.Logger
	retries *prometheus.CounterVec
	noRetry prometheus.Counter
}

var _ Bucket = (*Retrying)(nil)

// NewRetrying wraps b. A nil m keeps the metrics unregistered.
func NewRetrying(b Bucket, policy RetryPolicy, logger *slog.Logger, m *Metrics) *Retrying {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	for _, op := range allOps {
		m.retries.WithLabelValues(b.Name(), op)
	}
	return &Retrying{
		b: b, policy: policy.withDefaults(), logger: logger,
		retries: m.retries, noRetry: m.noRetry.WithLabelValues(b.Name()),
	}
}

func (r *Retrying) do(ctx context.Context, op, key string, fn func(ctx context.Context) error) error {
	return r.policy.Do(ctx, fn, func(attempt int, err error, sleep time.Duration) {
		r.retries.WithLabelValues(r.b.Name(), op).Inc()
		r.logger.Warn("object store call failed, retrying", "operation", op, "key", key,
			"attempt", attempt, "sleep", sleep, "err", err)
	})
}

// Name is the wrapped bucket's.
func (r *Retrying) Name() string { return r.b.Name() }

// Unwrap returns the wrapped bucket.
func (r *Retrying) Unwrap() Bucket { return r.b }

func (r *Retrying) Get(ctx context.Context, key string) (rc io.ReadCloser, err error) {
	err = r.do(ctx, opGet, key, func(ctx context.Context) error {
		rc, err = r.b.Get(ctx, key)
		return err
	})
	return rc, err
}

func (r *Retrying) GetRange(ctx context.Context, key string, offset, length int64) (rc io.ReadCloser, err error) {
	err = r.do(ctx, opGetRange, key, func(ctx context.Context) error {
		rc, err = r.b.GetRange(ctx, key, offset, length)
		return err
	})
	return rc, err
}

func (r *Retrying) Attributes(ctx context.Context, key string) (a ObjectAttrs, err error) {
	err = r.do(ctx, opAttributes, key, func(ctx context.Context) error {
		a, err = r.b.Attributes(ctx, key)
		return err
	})
	return a, err
}

func (r *Retrying) Iter(ctx context.Context, prefix string, fn func(ObjectAttrs) error) error {
	return r.IterAfter(ctx, prefix, "", fn)
}

// IterAfter retries like Iter; a retry starts after the last key delivered.
func (r *Retrying) IterAfter(ctx context.Context, prefix, startAfter string, fn func(ObjectAttrs) error) error {
	last := startAfter
	var fnErr error
	err := r.do(ctx, opIter, prefix, func(ctx context.Context) error {
		return IterAfter(ctx, r.b, prefix, last, func(a ObjectAttrs) error {
			if a.Key <= last {
				return nil // delivered by an earlier attempt
			}
			if err := fn(a); err != nil {
				fnErr = err
				return err
			}
			last = a.Key
			return nil
		})
	})
	if fnErr != nil {
		return fnErr // the caller's own error is never retried
	}
	return err
}

func (r *Retrying) Put(ctx context.Context, key string, rd io.Reader, size int64) error {
	seeker, ok := rd.(io.Seeker)
	if !ok {
		if err := r.b.Put(ctx, key, rd, size); err != nil {
			if IsRetryable(err) {
				r.noRetry.Inc()
			}
			return err
		}
		return nil
	}
	start, err := seeker.Seek(0, io.SeekCurrent)
	if err != nil {
		return r.b.Put(ctx, key, rd, size) // claims to seek but cannot: one attempt
	}
	first := true
	return r.do(ctx, opPut, key, func(ctx context.Context) error {
		if !first {
			if _, err := seeker.Seek(start, io.SeekStart); err != nil {
				return fmt.Errorf("put %s: rewind for retry: %w", key, err)
			}
		}
		first = false
		return r.b.Put(ctx, key, rd, size)
	})
}

// PutIfAbsent retries transient failures. A transient failure can hide a
// write that landed (its answer was lost), so after a retry ErrExists may mean
// this call's own earlier attempt won; callers that must tell these apart
// compare the stored object with theirs, as CommitLog.Commit does. The
// decorator does not do it for them: identical bytes from two writers would
// then both "win", breaking the contract.
func (r *Retrying) PutIfAbsent(ctx context.Context, key string, data []byte) error {
	return r.do(ctx, opPutIfAbsent, key, func(ctx context.Context) error { return r.b.PutIfAbsent(ctx, key, data) })
}

func (r *Retrying) Delete(ctx context.Context, key string) error {
	return r.do(ctx, opDelete, key, func(ctx context.Context) error { return r.b.Delete(ctx, key) })
}
