package objstore

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Operation label values.
const (
	opGet         = "get"
	opGetRange    = "get_range"
	opAttributes  = "attributes"
	opIter        = "iter"
	opPut         = "put"
	opPutIfAbsent = "put_if_absent"
	opPutIfMatch  = "put_if_match"
	opDelete      = "delete"
)

// allOps are every bucket's operations: their error series start at zero,
// so that rates and alerts see 0 rather than nothing.
var allOps = []string{opGet, opGetRange, opAttributes, opIter, opPut, opPutIfAbsent, opPutIfMatch, opDelete}

// Failure reasons, a small fixed set so the label stays bounded.
const (
	reasonCanceled  = "canceled"
	reasonTimeout   = "timeout"
	reasonTransient = "transient"
	reasonNotExist  = "not_exist"
	reasonExists    = "exists"
	reasonInvalid   = "invalid_key"
	reasonOther     = "permanent"
)

// Metrics are the object-store series of one process, created once on its
// registerer and given to every Instrumented and Retrying bucket of the
// process; the bucket label tells the buckets apart.
type Metrics struct {
	ops      *prometheus.CounterVec
	failures *prometheus.CounterVec
	duration *prometheus.HistogramVec
	bytes    *prometheus.CounterVec
	retries  *prometheus.CounterVec
	noRetry  *prometheus.CounterVec
}

// NewMetrics creates the series on reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	return &Metrics{
		ops: f.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_sink_object_operations_total",
			Help: "Object-store operations started, by bucket and operation.",
		}, []string{"bucket", "operation"}),
		failures: f.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_sink_object_operation_failures_total",
			Help: "Object-store operations that failed, by reason. A missing key on a read and a lost conditional create are outcomes, not failures.",
		}, []string{"bucket", "operation", "reason"}),
		duration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sluice_sink_object_operation_duration_seconds",
			Help:    "Time to complete an object-store operation (for gets: to open the object).",
			Buckets: []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"bucket", "operation"}),
		bytes: f.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_sink_object_bytes_total",
			Help: "Object bytes moved, by direction (read, written).",
		}, []string{"bucket", "direction"}),
		retries: f.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_sink_object_retries_total",
			Help: "Object-store calls retried after a transient error, by operation.",
		}, []string{"bucket", "operation"}),
		noRetry: f.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_sink_object_unretryable_puts_total",
			Help: "Puts given a single attempt because their reader cannot be rewound.",
		}, []string{"bucket"}),
	}
}

// Instrumented is a Bucket that counts and times the calls of another.
type Instrumented struct {
	b            Bucket
	name         string
	m            *Metrics
	bytesRead    prometheus.Counter
	bytesWritten prometheus.Counter
}

var _ Bucket = (*Instrumented)(nil)

// NewInstrumented wraps b; name is the bucket label of its metrics. Put it
// outside a Retrying decorator to count logical calls, inside to count
// attempts. A nil m keeps the metrics unregistered.
func NewInstrumented(b Bucket, m *Metrics, name string) *Instrumented {
	if m == nil {
		m = NewMetrics(nil)
	}
	for _, op := range allOps {
		m.failures.WithLabelValues(name, op, reasonTransient)
		m.ops.WithLabelValues(name, op)
	}
	return &Instrumented{
		b: b, name: name, m: m,
		bytesRead:    m.bytes.WithLabelValues(name, "read"),
		bytesWritten: m.bytes.WithLabelValues(name, "written"),
	}
}

// Name is the wrapped bucket's.
func (in *Instrumented) Name() string { return in.b.Name() }

// Unwrap returns the wrapped bucket.
func (in *Instrumented) Unwrap() Bucket { return in.b }

// observe records one finished operation. Outcomes the caller expects
// (ok lists them) are not failures.
func (in *Instrumented) observe(op string, start time.Time, err error, ok ...error) {
	in.m.ops.WithLabelValues(in.name, op).Inc()
	in.m.duration.WithLabelValues(in.name, op).Observe(time.Since(start).Seconds())
	if err == nil {
		return
	}
	for _, o := range ok {
		if errors.Is(err, o) {
			return
		}
	}
	in.m.failures.WithLabelValues(in.name, op, failureReason(err)).Inc()
}

func failureReason(err error) string {
	switch {
	case errors.Is(err, context.Canceled):
		return reasonCanceled
	case errors.Is(err, context.DeadlineExceeded):
		return reasonTimeout
	case errors.Is(err, ErrNotExist):
		return reasonNotExist
	case errors.Is(err, ErrExists):
		return reasonExists
	case errors.Is(err, ErrInvalidKey):
		return reasonInvalid
	case IsRetryable(err):
		return reasonTransient
	}
	return reasonOther
}

func (in *Instrumented) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	start := time.Now()
	rc, err := in.b.Get(ctx, key)
	in.observe(opGet, start, err, ErrNotExist)
	if err != nil {
		return nil, err
	}
	return &countingReadCloser{rc: rc, c: in.bytesRead}, nil
}

func (in *Instrumented) GetRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	start := time.Now()
	rc, err := in.b.GetRange(ctx, key, offset, length)
	in.observe(opGetRange, start, err, ErrNotExist)
	if err != nil {
		return nil, err
	}
	return &countingReadCloser{rc: rc, c: in.bytesRead}, nil
}

func (in *Instrumented) Attributes(ctx context.Context, key string) (ObjectAttrs, error) {
	start := time.Now()
	a, err := in.b.Attributes(ctx, key)
	in.observe(opAttributes, start, err, ErrNotExist)
	return a, err
}

func (in *Instrumented) Iter(ctx context.Context, prefix string, fn func(ObjectAttrs) error) error {
	return in.IterAfter(ctx, prefix, "", fn)
}

// IterAfter is counted as an Iter.
func (in *Instrumented) IterAfter(ctx context.Context, prefix, startAfter string, fn func(ObjectAttrs) error) error {
	start := time.Now()
	var fnErr error
	err := IterAfter(ctx, in.b, prefix, startAfter, func(a ObjectAttrs) error {
		fnErr = fn(a)
		return fnErr
	})
	if fnErr != nil && errors.Is(err, fnErr) {
		in.observe(opIter, start, nil) // the caller stopped the walk: not a store failure
	} else {
		in.observe(opIter, start, err)
	}
	return err
}

// Put counts size bytes on success; a reader of unknown size is wrapped to
// count what is read from it. A known size avoids wrapping, which would hide
// io.Seeker (needed by Retrying) and io.ReaderAt (parallel S3 uploads).
func (in *Instrumented) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	start := time.Now()
	if size < 0 {
		r = countingReader(r, in.bytesWritten)
	}
	err := in.b.Put(ctx, key, r, size)
	in.observe(opPut, start, err)
	if err == nil && size >= 0 {
		in.bytesWritten.Add(float64(size))
	}
	return err
}

func (in *Instrumented) PutIfAbsent(ctx context.Context, key string, data []byte) error {
	start := time.Now()
	err := in.b.PutIfAbsent(ctx, key, data)
	in.observe(opPutIfAbsent, start, err, ErrExists)
	if err == nil {
		in.bytesWritten.Add(float64(len(data)))
	}
	return err
}

func (in *Instrumented) Delete(ctx context.Context, key string) error {
	start := time.Now()
	err := in.b.Delete(ctx, key)
	in.observe(opDelete, start, err)
	return err
}

type countingReadCloser struct {
	rc io.ReadCloser
	c  prometheus.Counter
}

func (c *countingReadCloser) Read(p []byte) (int, error) {
	n, err := c.rc.Read(p)
	c.c.Add(float64(n))
	return n, err
}

func (c *countingReadCloser) Close() error { return c.rc.Close() }

// countingReader keeps io.Seeker visible when r has it.
func countingReader(r io.Reader, c prometheus.Counter) io.Reader {
	cr := &counting{r: r, c: c}
	if s, ok := r.(io.Seeker); ok {
		return &countingSeeker{counting: cr, s: s}
	}
	return cr
}

type counting struct {
	r io.Reader
	c prometheus.Counter
}

func (c *counting) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.c.Add(float64(n))
	return n, err
}

type countingSeeker struct {
	*counting
	s io.Seeker
}

func (c *countingSeeker) Seek(off int64, whence int) (int64, error) { return c.s.Seek(off, whence) }
