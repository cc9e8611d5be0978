package objstoretest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"golang.org/x/sync/errgroup"

	"github.com/sluicehq/sluice/objstore"
)

// Environment of the S3 server used by tests (see scripts/versitygw.sh).
const (
	EnvS3Endpoint  = "SLUICE_TEST_S3_ENDPOINT"
	EnvS3AccessKey = "SLUICE_TEST_S3_ACCESS_KEY"
	EnvS3SecretKey = "SLUICE_TEST_S3_SECRET_KEY"
)

// NewLocal returns a bucket in a temporary directory removed after the test.
func NewLocal(t testing.TB) *objstore.Local {
	t.Helper()
	b, err := objstore.NewLocal(t.TempDir())
	if err != nil {
		t.Fatalf("local bucket: %v", err)
	}
	return b
}

// S3Config returns the config of the test S3 server for a new, uniquely
// named bucket, or skips the test when the server is not configured. Under
// CI (env CI set and not "false") a missing server fails the test instead,
// so CI can never pass by silently skipping the real store.
func S3Config(t testing.TB) objstore.S3Config {
	t.Helper()
	endpoint := os.Getenv(EnvS3Endpoint)
	access, secret := os.Getenv(EnvS3AccessKey), os.Getenv(EnvS3SecretKey)
	if endpoint == "" || access == "" || secret == "" {
		msg := fmt.Sprintf("S3 test server not configured: set %s, %s and %s (scripts/versitygw.sh start)",
			EnvS3Endpoint, EnvS3AccessKey, EnvS3SecretKey)
		if ci := os.Getenv("CI"); ci != "" && ci != "false" && ci != "0" {
			t.Fatal(msg + "; CI is set, so this is a failure, not a skip")
		}
		t.Skip(msg)
	}
	return objstore.S3Config{
		Endpoint:     endpoint,
		Region:       "us-east-1",
		Bucket:       "sluice-test-" + randomHex(6),
		AccessKey:    access,
		SecretKey:    secret,
		Insecure:     true,
		PathStyle:    true,
		CreateBucket: true,
		PartSize:     objstore.MinPartSize,
		// Tests use the raw client, without the Retrying decorator that
		// production puts around it; let the client retry transport errors
		// itself. (Conditional PUTs no longer need it: they are signed whole,
		// see TestConditionalLosersGetAnAnswerS3.)
		ClientRetries: 3,
	}
}

// NewS3 opens a fresh bucket on the test S3 server (see S3Config for when it
// skips); the bucket and its objects are removed after the test.
func NewS3(t testing.TB, logger *slog.Logger) *objstore.S3 {
	t.Helper()
	return OpenS3(t, S3Config(t), logger)
}

// OpenS3 opens the bucket cfg names, a config from S3Config that the test
// may have changed (a prefix, say), creating it; the bucket and the objects
// under cfg's prefix are removed after the test.
func OpenS3(t testing.TB, cfg objstore.S3Config, logger *slog.Logger) *objstore.S3 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := objstore.OpenS3(ctx, cfg, logger)
	if err != nil {
		t.Fatalf("open S3 bucket %s: %v", cfg, err)
	}
	t.Cleanup(func() { removeBucket(t, b, cfg.Bucket) })
	return b
}

// removeBucket deletes every object, 16 at a time (some tests leave
// hundreds of thousands), then the bucket.
func removeBucket(t testing.TB, b *objstore.S3, bucket string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	var keys []string
	if err := b.Iter(ctx, "", func(a objstore.ObjectAttrs) error {
		keys = append(keys, a.Key)
		return nil
	}); err != nil {
		t.Errorf("cleanup: list %s: %v", bucket, err)
		return
	}
	var g errgroup.Group
	g.SetLimit(16)
	for _, k := range keys {
		g.Go(func() error { return b.Delete(ctx, k) })
	}
	if err := g.Wait(); err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	if err := b.Client().RemoveBucket(ctx, bucket); err != nil && minio.ToErrorResponse(err).Code != "NoSuchBucket" {
		t.Errorf("cleanup: remove bucket %s: %v", bucket, err)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return hex.EncodeToString(b)
}

// randomBytes returns n random bytes.
func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// Put stores data under key or fails the test.
func Put(t testing.TB, b objstore.Bucket, key string, data []byte) {
	t.Helper()
	if err := b.Put(t.Context(), key, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}
