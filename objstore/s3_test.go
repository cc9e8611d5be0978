package objstore_test

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/objstore"
)

func TestS3ConfigValidate(t *testing.T) {
	good := objstore.S3Config{Endpoint: "127.0.0.1:9000", Bucket: "lake", AccessKey: "a", SecretKey: "s"}
	for _, tc := range []struct {
		name   string
		mutate func(*objstore.S3Config)
		want   error // nil: valid
	}{
		{"valid", func(*objstore.S3Config) {}, nil},
		{"AWS default endpoint and credential chain", func(c *objstore.S3Config) { c.Endpoint, c.AccessKey, c.SecretKey = "", "", "" }, nil},
		{"prefix", func(c *objstore.S3Config) { c.Prefix = "env/prod/" }, nil},
		{"no bucket", func(c *objstore.S3Config) { c.Bucket = "" }, objstore.ErrNoBucket},
		{"scheme in endpoint", func(c *objstore.S3Config) { c.Endpoint = "http://127.0.0.1:9000" }, objstore.ErrBadEndpoint},
		{"path in endpoint", func(c *objstore.S3Config) { c.Endpoint = "minio:9000/lake" }, objstore.ErrBadEndpoint},
		{"absolute prefix", func(c *objstore.S3Config) { c.Prefix = "/abs" }, objstore.ErrBadPrefix},
		{"dot-dot prefix", func(c *objstore.S3Config) { c.Prefix = "a/../b" }, objstore.ErrBadPrefix},
		{"access key alone", func(c *objstore.S3Config) { c.SecretKey = "" }, objstore.ErrPartialCredentials},
		{"tiny part size", func(c *objstore.S3Config) { c.PartSize = 1 << 20 }, objstore.ErrPartSize},
		{"TLS options over plain HTTP", func(c *objstore.S3Config) { c.Insecure, c.TLSSkipVerify = true, true }, objstore.ErrTLSOnInsecure},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.mutate(&cfg)
			err := cfg.Validate()
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("Validate() = %v, want %v", err, tc.want)
			}
			_, nerr := objstore.NewS3(cfg, nil)
			if (nerr == nil) != (tc.want == nil) {
				t.Errorf("NewS3() = %v, want error %v", nerr, tc.want)
			}
		})
	}
}

func TestS3ConfigRedactsSecrets(t *testing.T) {
	cfg := objstore.S3Config{Endpoint: "s3.example.com", Bucket: "lake", Prefix: "p", AccessKey: "AKIAEXAMPLEKEY", SecretKey: "very-secret-value", SessionToken: "session-token-value"}
	rendered := []string{
		cfg.String(),
		fmt.Sprint(cfg),
		fmt.Sprintf("%v %+v %#v %s", cfg, cfg, cfg, &cfg),
		cfg.LogValue().Resolve().String(),
	}
	for _, s := range rendered {
		for _, secret := range []string{cfg.AccessKey, cfg.SecretKey, cfg.SessionToken} {
			if strings.Contains(s, secret) {
				t.Errorf("%q reveals %q", s, secret)
			}
		}
	}
	if !strings.Contains(cfg.String(), "s3://lake/p/") {
		t.Errorf("String() = %q, want the bucket and prefix", cfg.String())
	}
	b, err := objstore.NewS3(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := b.Name(), "s3://lake/p/ (s3.example.com)"; got != want {
		t.Errorf("Name() = %q, want %q", got, want)
	}
}
