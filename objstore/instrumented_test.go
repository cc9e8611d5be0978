package objstore_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"
	"testing/iotest"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/objstore/objstoretest"
)

func TestInstrumentedMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	sm := objstore.NewMetrics(reg)
	h := objstoretest.NewHookBucket(objstoretest.NewLocal(t))
	b := objstore.NewInstrumented(h, sm, "lake")
	// A second bucket on the same registerer reuses the collectors.
	other := objstore.NewInstrumented(objstoretest.NewLocal(t), sm, "scratch")
	ctx := t.Context()

	if err := b.Put(ctx, "a/1", bytes.NewReader([]byte("hello")), 5); err != nil {
		t.Fatal(err)
	}
	if err := b.Put(ctx, "a/2", iotest.HalfReader(bytes.NewReader([]byte("unknown size"))), -1); err != nil {
		t.Fatal(err)
	}
	rc, err := b.Get(ctx, "a/1")
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(rc)
	rc.Close()
	if _, err := b.Get(ctx, "a/missing"); !objstore.IsNotExist(err) {
		t.Fatal(err)
	}
	if err := b.PutIfAbsent(ctx, "c/1", []byte("xyz")); err != nil {
		t.Fatal(err)
	}
	if err := b.PutIfAbsent(ctx, "c/1", []byte("xyz")); !objstore.IsExists(err) {
		t.Fatal(err)
	}
	h.Before = func(op, _ string) error {
		if op == "delete" {
			return fmt.Errorf("delete: %w", objstore.ErrUnavailable)
		}
		return nil
	}
	if err := b.Delete(ctx, "a/1"); err == nil {
		t.Fatal("delete: want the injected failure")
	}
	stop := errors.New("stop")
	if err := b.Iter(ctx, "", func(objstore.ObjectAttrs) error { return stop }); !errors.Is(err, stop) {
		t.Fatal(err)
	}
	if err := other.Put(ctx, "x", bytes.NewReader([]byte("1")), 1); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name   string
		metric string
		labels map[string]string
		want   float64
	}{
		{"puts", "sluice_sink_object_operations_total", map[string]string{"bucket": "lake", "operation": "put"}, 2},
		{"gets", "sluice_sink_object_operations_total", map[string]string{"bucket": "lake", "operation": "get"}, 2},
		{"a missing key is not a failure", "sluice_sink_object_operation_failures_total", map[string]string{"bucket": "lake", "operation": "get"}, 0},
		{"conditional creates", "sluice_sink_object_operations_total", map[string]string{"bucket": "lake", "operation": "put_if_absent"}, 2},
		{"a lost conditional create is not a failure", "sluice_sink_object_operation_failures_total", map[string]string{"operation": "put_if_absent"}, 0},
		{"failed delete by reason", "sluice_sink_object_operation_failures_total", map[string]string{"bucket": "lake", "operation": "delete", "reason": "transient"}, 1},
		{"a stopped iteration is not a failure", "sluice_sink_object_operation_failures_total", map[string]string{"operation": "iter"}, 0},
		{"durations observed", "sluice_sink_object_operation_duration_seconds", map[string]string{"bucket": "lake"}, 8},
		{"bytes written: known and unknown size, conditional create", "sluice_sink_object_bytes_total", map[string]string{"bucket": "lake", "direction": "written"}, 5 + 12 + 3},
		{"bytes read", "sluice_sink_object_bytes_total", map[string]string{"bucket": "lake", "direction": "read"}, 5},
		{"second bucket counted apart", "sluice_sink_object_operations_total", map[string]string{"bucket": "scratch"}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := metricValue(t, reg, tc.metric, tc.labels); got != tc.want {
				t.Errorf("%s%v = %v, want %v", tc.metric, tc.labels, got, tc.want)
			}
		})
	}
}

// Outside a Retrying bucket the instrumented Put must keep the reader
// seekable, or every upload would lose its retries.
func TestInstrumentedKeepsPutRetryable(t *testing.T) {
	reg := prometheus.NewRegistry()
	sm := objstore.NewMetrics(reg)
	h := objstoretest.NewHookBucket(objstoretest.NewLocal(t))
	fails := 2
	h.Before = func(op, _ string) error {
		if op == "put" && fails > 0 {
			fails--
			return objstore.ErrUnavailable
		}
		return nil
	}
	b := objstore.NewInstrumented(objstore.NewRetrying(h, fastPolicy, nil, sm), sm, "lake")
	for _, size := range []int64{3, -1} {
		fails = 2
		if err := b.Put(t.Context(), "k", bytes.NewReader([]byte("abc")), size); err != nil {
			t.Errorf("put (size %d): %v", size, err)
		}
	}
	if got := metricValue(t, reg, "sluice_sink_object_unretryable_puts_total", nil); got != 0 {
		t.Errorf("unretryable puts = %v, want 0", got)
	}
}
