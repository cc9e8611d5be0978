package objstore_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/internal/faultproxy"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/objstore/objstoretest"
)

// The startup probe passes on stores that honour conditional writes and
// leaves nothing behind.
func TestCheckConditionalWritesHonoured(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    func(t *testing.T) objstore.Bucket
	}{
		{"local", func(t *testing.T) objstore.Bucket { return objstoretest.NewLocal(t) }},
		{"s3", func(t *testing.T) objstore.Bucket { return objstoretest.NewS3(t, slog.New(slog.DiscardHandler)) }},
		{"s3 decorated", func(t *testing.T) objstore.Bucket {
			reg := prometheus.NewRegistry()
			sm := objstore.NewMetrics(reg)
			b := objstoretest.NewS3(t, slog.New(slog.DiscardHandler))
			return objstore.NewRetrying(objstore.NewInstrumented(b, sm, "raw"), objstore.DefaultRetryPolicy(), nil, sm)
		}},
		{"s3 through the proxy, conditions kept", func(t *testing.T) objstore.Bucket {
			b, _ := proxiedS3(t)
			return b
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.b(t)
			if err := objstore.CheckConditionalWrites(t.Context(), b); err != nil {
				t.Fatalf("probe: %v", err)
			}
			var left []string
			if err := b.Iter(t.Context(), objstore.ProbePrefix, func(a objstore.ObjectAttrs) error {
				left = append(left, a.Key)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if len(left) != 0 {
				t.Errorf("probe objects left behind: %q", left)
			}
		})
	}
}

// An S3 server that ignores If-None-Match and If-Match (the fault proxy
// strips them) is refused, with an error naming the store.
func TestCheckConditionalWritesRefusesIgnoringServer(t *testing.T) {
	b, proxy := proxiedS3(t)
	cfg := objstoretest.S3Config(t)
	proxy.IgnoreConditionalWrites(&faultproxy.Credentials{AccessKey: cfg.AccessKey, SecretKey: cfg.SecretKey, Region: cfg.Region})
	reg := prometheus.NewRegistry()
	sm := objstore.NewMetrics(reg)
	for _, tc := range []struct {
		name string
		b    objstore.Bucket
	}{
		{"plain", b},
		{"decorated", objstore.NewRetrying(objstore.NewInstrumented(b, sm, "raw"), objstore.DefaultRetryPolicy(), nil, sm)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := proxy.Stats().Unconditional
			err := objstore.CheckConditionalWrites(t.Context(), tc.b)
			if !errors.Is(err, objstore.ErrNoConditionalWrites) {
				t.Fatalf("probe: err = %v, want ErrNoConditionalWrites", err)
			}
			if !strings.Contains(err.Error(), b.Name()) || !strings.Contains(err.Error(), "If-None-Match") {
				t.Errorf("error %q does not name the store %s and the header", err, b.Name())
			}
			t.Logf("refused: %v", err)
			if proxy.Stats().Unconditional == before {
				t.Error("the proxy stripped nothing: the refusal is not due to the missing condition")
			}
		})
	}
}

// proxiedS3 is a fresh test bucket reached through a fault proxy.
func proxiedS3(t *testing.T) (*objstore.S3, *faultproxy.Proxy) {
	t.Helper()
	direct := objstoretest.NewS3(t, slog.New(slog.DiscardHandler)) // creates the bucket, removes it after
	cfg := objstoretest.S3Config(t)
	p, err := faultproxy.Start("http://" + cfg.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	cfg.Endpoint = p.Addr()
	// Name is "s3://<bucket>/<prefix> (<endpoint>)".
	cfg.Bucket = strings.SplitN(strings.TrimPrefix(direct.Name(), "s3://"), "/", 2)[0]
	cfg.CreateBucket = false
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	b, err := objstore.OpenS3(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return b, p
}
