package sink_test

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/sink"
)

func TestS3ConfigValidate(t *testing.T) {
	good := sink.S3Config{Endpoint: "127.0.0.1:9000", Bucket: "lake", AccessKey: "a", SecretKey: "s"}
	for _, tc := range []struct {
		name   string
		mutate func(*sink.S3Config)
		want   error // nil: valid
	}{
		{"valid", func(*sink.S3Config) {}, nil},
		{"AWS default endpoint and credential chain", func(c *sink.S3Config) { c.Endpoint, c.AccessKey, c.SecretKey = "", "", "" }, nil},
		{"prefix", func(c *sink.S3Config) { c.Prefix = "env/prod/" }, nil},
		{"no bucket", func(c *sink.S3Config) { c.Bucket = "" }, sink.ErrNoBucket},
		{"scheme in endpoint", func(c *sink.S3Config) { c.Endpoint = "http://127.0.0.1:9000" }, sink.ErrBadEndpoint},
		{"path in endpoint", func(c *sink.S3Config) { c.Endpoint = "minio:9000/lake" }, sink.ErrBadEndpoint},
		{"absolute prefix", func(c *sink.S3Config) { c.Prefix = "/abs" }, sink.ErrBadPrefix},
		{"dot-dot prefix", func(c *sink.S3Config) { c.Prefix = "a/../b" }, sink.ErrBadPrefix},
		{"access key alone", func(c *sink.S3Config) { c.SecretKey = "" }, sink.ErrPartialCredentials},
		{"tiny part size", func(c *sink.S3Config) { c.PartSize = 1 << 20 }, sink.ErrPartSize},
		{"TLS options over plain HTTP", func(c *sink.S3Config) { c.Insecure, c.TLSSkipVerify = true, true }, sink.ErrTLSOnInsecure},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.mutate(&cfg)
			err := cfg.Validate()
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("Validate() = %v, want %v", err, tc.want)
			}
			_, nerr := sink.NewS3(cfg, nil)
			if (nerr == nil) != (tc.want == nil) {
				t.Errorf("NewS3() = %v, want error %v", nerr, tc.want)
			}
		})
	}
}

func TestS3ConfigRedactsSecrets(t *testing.T) {
	cfg := sink.S3Config{Endpoint: "s3.example.com", Bucket: "lake", Prefix: "p", AccessKey: "AKIAEXAMPLEKEY", SecretKey: "very-secret-value", SessionToken: "session-token-value"}
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
	b, err := sink.NewS3(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := b.Name(), "s3://lake/p/ (s3.example.com)"; got != want {
		t.Errorf("Name() = %q, want %q", got, want)
	}
}
