package objstore

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Named configuration errors of S3Config.Validate.
var (
	ErrNoBucket           = errors.New("s3: bucket is required")
	ErrBadEndpoint        = errors.New("s3: endpoint must be host[:port] without scheme or path")
	ErrBadPrefix          = errors.New("s3: prefix must be a relative key path")
	ErrPartialCredentials = errors.New("s3: access_key and secret_key must be set together")
	ErrPartSize           = errors.New("s3: part_size must be between 5 MiB and 5 GiB")
	ErrTLSOnInsecure      = errors.New("s3: tls_skip_verify and ca_cert_file need TLS, but insecure is set")
)

// S3 part sizes: the protocol's bounds and our default, which caps the memory
// one upload of unknown size buffers.
const (
	MinPartSize     = 5 << 20
	maxPartSize     = 5 << 30
	DefaultPartSize = 16 << 20
)

// S3Config says where an S3-compatible bucket is and how to reach it.
type S3Config struct {
	// Endpoint is host[:port] without a scheme; empty means AWS
	// (s3.amazonaws.com).
	Endpoint string `yaml:"endpoint"`
	// Region signs requests; empty asks the server (one extra request per
	// bucket, cached).
	Region string `yaml:"region"`
	Bucket string `yaml:"bucket"`
	// Prefix is prepended to every key, so one bucket can hold several lakes.
	// Keys returned by Iter have it stripped.
	Prefix string `yaml:"prefix"`
	// Credentials; when AccessKey is empty the usual chain is used: the
	// AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN environment,
	// then the shared credentials file, then the instance's IAM role.
	AccessKey    string `yaml:"access_key"`
	SecretKey    string `yaml:"secret_key"`
	SessionToken string `yaml:"session_token"`
	// Insecure talks plain HTTP (local MinIO, versitygw).
	Insecure      bool   `yaml:"insecure"`
	TLSSkipVerify bool   `yaml:"tls_skip_verify"`
	CACertFile    string `yaml:"ca_cert_file"`
	// PathStyle puts the bucket in the path (MinIO, versitygw) instead of the
	// host name.
	PathStyle bool `yaml:"path_style"`
	// CreateBucket makes OpenS3 create a missing bucket instead of failing.
	CreateBucket bool `yaml:"create_bucket"`
	// PartSize is the multipart chunk of large uploads, in bytes (default
	// 16 MiB). An upload of unknown size buffers one part in memory and is
	// limited to 10000 parts.
	PartSize int64 `yaml:"part_size"`
	// ClientRetries is how many attempts minio-go makes per request on its
	// own (default 1: none). Retries belong to the Retrying decorator, which
	// counts them and bounds their time; raise this only without it.
	ClientRetries int `yaml:"client_retries"`
}

// Validate checks the config without network access.
func (c *S3Config) Validate() error {
	if c.Bucket == "" {
		return ErrNoBucket
	}
	if strings.Contains(c.Endpoint, "://") || strings.ContainsAny(c.Endpoint, "/?# ") {
		return fmt.Errorf("%w: %q", ErrBadEndpoint, c.Endpoint)
	}
	if c.Prefix != "" {
		if err := ValidateKey(strings.TrimSuffix(c.Prefix, "/")); err != nil {
			return fmt.Errorf("%w: %v", ErrBadPrefix, err)
		}
	}
	if (c.AccessKey == "") != (c.SecretKey == "") {
		return ErrPartialCredentials
	}
	if c.PartSize != 0 && (c.PartSize < MinPartSize || c.PartSize > maxPartSize) {
		return fmt.Errorf("%w: got %d", ErrPartSize, c.PartSize)
	}
	if c.Insecure && (c.TLSSkipVerify || c.CACertFile != "") {
		return ErrTLSOnInsecure
	}
	if c.ClientRetries < 0 {
		return fmt.Errorf("s3: client_retries must not be negative, got %d", c.ClientRetries)
	}
	return nil
}

func (c S3Config) endpoint() string {
	if c.Endpoint == "" {
		return "s3.amazonaws.com"
	}
	return c.Endpoint
}

func (c S3Config) prefix() string {
	if c.Prefix == "" {
		return ""
	}
	return strings.TrimSuffix(c.Prefix, "/") + "/"
}

// String describes the config with secrets redacted, safe for logs.
func (c S3Config) String() string {
	return fmt.Sprintf("s3://%s/%s (endpoint %s, region %q, access key %s, insecure %v, path style %v)",
		c.Bucket, c.prefix(), c.endpoint(), c.Region, redact(c.AccessKey), c.Insecure, c.PathStyle)
}

// LogValue keeps secrets out of structured logs.
func (c S3Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("endpoint", c.endpoint()),
		slog.String("region", c.Region),
		slog.String("bucket", c.Bucket),
		slog.String("prefix", c.prefix()),
		slog.String("access_key", redact(c.AccessKey)),
		slog.String("secret_key", redact(c.SecretKey)),
		slog.String("session_token", redact(c.SessionToken)),
		slog.Bool("insecure", c.Insecure),
		slog.Bool("path_style", c.PathStyle),
	)
}

// GoString keeps %#v from printing secrets too.
func (c S3Config) GoString() string { return "objstore.S3Config{" + c.String() + "}" }

func redact(s string) string {
	if s == "" {
		return "(from environment)"
	}
	return "REDACTED"
}

// S3 is a Bucket in an S3-compatible store.
type S3 struct {
	cfg    S3Config
	prefix string
	client *minio.Client
	core   minio.Core
	logger *slog.Logger
}

var _ Bucket = (*S3)(nil)

// NewS3 builds the client without network access; see OpenS3 for a bucket
// that is checked (and created if configured) before use.
func NewS3(cfg S3Config, logger *slog.Logger) (*S3, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.PartSize == 0 {
		cfg.PartSize = DefaultPartSize
	}
	creds := credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, cfg.SessionToken)
	if cfg.AccessKey == "" {
		creds = credentials.NewChainCredentials([]credentials.Provider{
			&credentials.EnvAWS{},
			&credentials.FileAWSCredentials{},
			&credentials.IAM{},
		})
	}
	transport, err := minio.DefaultTransport(!cfg.Insecure)
	if err != nil {
		return nil, fmt.Errorf("s3 transport: %w", err)
	}
	if !cfg.Insecure && (cfg.TLSSkipVerify || cfg.CACertFile != "") {
		tc := transport.TLSClientConfig.Clone()
		tc.InsecureSkipVerify = cfg.TLSSkipVerify //nolint:gosec // asked for explicitly
		if cfg.CACertFile != "" {
			pem, err := os.ReadFile(cfg.CACertFile)
			if err != nil {
				return nil, fmt.Errorf("s3 ca_cert_file: %w", err)
			}
			pool, err := x509.SystemCertPool()
			if err != nil || pool == nil {
				pool = x509.NewCertPool()
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("s3 ca_cert_file %s: no PEM certificates found", cfg.CACertFile)
			}
			tc.RootCAs = pool
		}
		transport.TLSClientConfig = tc
	}
	lookup := minio.BucketLookupAuto
	if cfg.PathStyle {
		lookup = minio.BucketLookupPath
	}
	retries := cfg.ClientRetries
	if retries == 0 {
		retries = 1
	}
	client, err := minio.New(cfg.endpoint(), &minio.Options{
		Creds:        creds,
		Secure:       !cfg.Insecure,
		Transport:    transport,
		Region:       cfg.Region,
		BucketLookup: lookup,
		MaxRetries:   retries,
	})
	if err != nil {
		return nil, fmt.Errorf("s3 client for %s: %w", cfg.endpoint(), err)
	}
	return &S3{cfg: cfg, prefix: cfg.prefix(), client: client, core: minio.Core{Client: client}, logger: logger}, nil
}

// OpenS3 is NewS3 followed by Init.
func OpenS3(ctx context.Context, cfg S3Config, logger *slog.Logger) (*S3, error) {
	b, err := NewS3(cfg, logger)
	if err != nil {
		return nil, err
	}
	if err := b.Init(ctx); err != nil {
		return nil, err
	}
	return b, nil
}

// Init checks that the bucket exists, creating it if CreateBucket is set.
func (s *S3) Init(ctx context.Context) error {
	ok, err := s.client.BucketExists(ctx, s.cfg.Bucket)
	if err != nil {
		return fmt.Errorf("check bucket %s: %w", s.Name(), err)
	}
	if ok {
		return nil
	}
	if !s.cfg.CreateBucket {
		return fmt.Errorf("bucket %s does not exist (set create_bucket to create it)", s.Name())
	}
	err = s.client.MakeBucket(ctx, s.cfg.Bucket, minio.MakeBucketOptions{Region: s.cfg.Region})
	if err != nil {
		code := minio.ToErrorResponse(err).Code
		if code != "BucketAlreadyOwnedByYou" && code != "BucketAlreadyExists" {
			return fmt.Errorf("create bucket %s: %w", s.Name(), err)
		}
	}
	s.logger.Info("created bucket", "bucket", s.Name())
	return nil
}

// Name returns s3://bucket/prefix (endpoint).
func (s *S3) Name() string {
	return fmt.Sprintf("s3://%s/%s (%s)", s.cfg.Bucket, s.prefix, s.cfg.endpoint())
}

// Client exposes the minio client for administrative tasks (tests, inspect).
func (s *S3) Client() *minio.Client { return s.client }

func (s *S3) fullKey(key string) (string, error) {
	if err := ValidateKey(key); err != nil {
		return "", err
	}
	return s.prefix + key, nil
}

// mapS3Error wraps minio errors in the package's sentinels where one fits,
// keeping the original for its code and status.
func mapS3Error(err error) error {
	var resp minio.ErrorResponse
	if !errors.As(err, &resp) {
		return err
	}
	switch {
	case resp.Code == "NoSuchKey" || (resp.StatusCode == http.StatusNotFound && resp.Code != "NoSuchBucket"):
		return fmt.Errorf("%w (%v)", ErrNotExist, err)
	case resp.Code == "PreconditionFailed" || resp.StatusCode == http.StatusPreconditionFailed,
		resp.Code == "ConditionalRequestConflict":
		return fmt.Errorf("%w (%v)", ErrExists, err)
	}
	return err
}

// Get opens the whole object. The request is made before Get returns, so a
// missing key is reported here and not on the first Read.
func (s *S3) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	return s.GetRange(ctx, key, 0, -1)
}

// GetRange opens length bytes from offset (length < 0: to the end).
func (s *S3) GetRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	fk, err := s.fullKey(key)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	if offset < 0 {
		return nil, fmt.Errorf("get %s: negative offset %d", key, offset)
	}
	opts := minio.GetObjectOptions{}
	switch {
	case length == 0:
		// A zero-length range cannot be expressed in HTTP; check the object
		// exists and the offset is within it, then return nothing.
		attrs, err := s.Attributes(ctx, key)
		if err != nil {
			return nil, fmt.Errorf("get range: %w", err)
		}
		if offset > attrs.Size {
			return nil, fmt.Errorf("get %s: range starts at %d, past the end (%d bytes)", key, offset, attrs.Size)
		}
		return io.NopCloser(bytes.NewReader(nil)), nil
	case offset == 0 && length < 0:
	case length < 0:
		err = opts.SetRange(offset, 0)
	default:
		err = opts.SetRange(offset, offset+length-1)
	}
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	body, _, _, err := s.core.GetObject(ctx, s.cfg.Bucket, fk, opts)
	if err != nil {
		if minio.ToErrorResponse(err).Code == "InvalidRange" {
			return s.emptyRange(ctx, key, offset, err)
		}
		return nil, fmt.Errorf("get %s: %w", key, mapS3Error(err))
	}
	return body, nil
}

// emptyRange handles servers answering 416 for a range that starts exactly
// at the end of the object (or on an empty object): that is an empty read,
// like the local bucket's; only a start past the end is an error.
func (s *S3) emptyRange(ctx context.Context, key string, offset int64, rangeErr error) (io.ReadCloser, error) {
	attrs, err := s.Attributes(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("get range: %w", err)
	}
	if offset == attrs.Size {
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	return nil, fmt.Errorf("get %s: range starts at %d, past the end (%d bytes): %w", key, offset, attrs.Size, rangeErr)
}

// Attributes returns the object's size and modification time.
func (s *S3) Attributes(ctx context.Context, key string) (ObjectAttrs, error) {
	fk, err := s.fullKey(key)
	if err != nil {
		return ObjectAttrs{}, fmt.Errorf("attributes %s: %w", key, err)
	}
	info, err := s.client.StatObject(ctx, s.cfg.Bucket, fk, minio.StatObjectOptions{})
	if err != nil {
		return ObjectAttrs{}, fmt.Errorf("attributes %s: %w", key, mapS3Error(err))
	}
	return ObjectAttrs{Key: key, Size: info.Size, LastModified: info.LastModified, ETag: strings.Trim(info.ETag, `"`)}, nil
}

// Iter lists recursively; S3 returns keys in ascending UTF-8 byte order.
func (s *S3) Iter(ctx context.Context, prefix string, fn func(ObjectAttrs) error) error {
	return s.IterAfter(ctx, prefix, "", fn)
}

// IterAfter is Iter for the keys after startAfter only: the listing starts
// there (S3's StartAfter), so a long prefix costs pages only past it.
func (s *S3) IterAfter(ctx context.Context, prefix, startAfter string, fn func(ObjectAttrs) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the listing goroutine when fn ends the walk early
	opts := minio.ListObjectsOptions{Prefix: s.prefix + prefix, Recursive: true}
	if startAfter != "" {
		opts.StartAfter = s.prefix + startAfter
	}
	for obj := range s.client.ListObjectsIter(ctx, s.cfg.Bucket, opts) {
		if obj.Err != nil {
			return fmt.Errorf("iter %q in %s: %w", prefix, s.Name(), obj.Err)
		}
		key, ok := strings.CutPrefix(obj.Key, s.prefix)
		if !ok || strings.HasSuffix(key, "/") {
			continue // directory markers made by other tools are not objects
		}
		if err := fn(ObjectAttrs{Key: key, Size: obj.Size, LastModified: obj.LastModified, ETag: strings.Trim(obj.ETag, `"`)}); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// Put uploads r; objects of PartSize or more (or of unknown size) go up in
// parts, which S3 makes visible only when the upload completes.
func (s *S3) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	fk, err := s.fullKey(key)
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	_, err = s.client.PutObject(ctx, s.cfg.Bucket, fk, r, size, minio.PutObjectOptions{
		PartSize:    uint64(s.cfg.PartSize),
		ContentType: "application/octet-stream",
	})
	if err != nil {
		return fmt.Errorf("put %s: %w", key, mapS3Error(err))
	}
	return nil
}

// PutIfAbsent is one PUT with If-None-Match: * through minio.Core: the
// high-level PutObject may go multipart and drop the header at completion.
// 412 PreconditionFailed and 409 ConditionalRequestConflict (a concurrent
// conditional write in flight) both mean another writer got there first.
func (s *S3) PutIfAbsent(ctx context.Context, key string, data []byte) error {
	fk, err := s.fullKey(key)
	if err != nil {
		return fmt.Errorf("put-if-absent %s: %w", key, err)
	}
	sum := md5.Sum(data)
	sha := sha256.Sum256(data)
	opts := conditionalPutOptions()
	opts.SetMatchETagExcept("*")
	_, err = s.core.PutObject(ctx, s.cfg.Bucket, fk, bytes.NewReader(data), int64(len(data)),
		base64.StdEncoding.EncodeToString(sum[:]), hex.EncodeToString(sha[:]), opts)
	if err != nil {
		return fmt.Errorf("put-if-absent %s: %w", key, mapS3Error(err))
	}
	return nil
}

// Delete removes the object; S3 deletes are idempotent.
func (s *S3) Delete(ctx context.Context, key string) error {
	fk, err := s.fullKey(key)
	if err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	if err := s.client.RemoveObject(ctx, s.cfg.Bucket, fk, minio.RemoveObjectOptions{}); err != nil {
		if errors.Is(mapS3Error(err), ErrNotExist) {
			return nil
		}
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}
