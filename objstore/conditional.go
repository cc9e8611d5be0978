package objstore

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
)

// ErrChanged is wrapped by errors from PutIfMatch when the object is no
// longer the version the caller read: another writer replaced or removed it.
var ErrChanged = errors.New("object changed since it was read")

// ErrUnsupported is wrapped by errors of a decorator whose wrapped bucket
// lacks an optional capability.
var ErrUnsupported = errors.New("not supported by this store")

// ConditionalBucket is a Bucket that can also replace an object only if it
// is still the version the caller read (compare-and-swap). Writers that must
// never overwrite a newer write of another process (summaries written under
// a lease that may have expired) read with GetVersion and write with
// PutIfMatch; creating an object that is absent stays PutIfAbsent.
type ConditionalBucket interface {
	Bucket
	// GetVersion reads the whole object and its version: an opaque token
	// that changes whenever the object is replaced with other bytes (the ETag
	// on S3). The error wraps ErrNotExist if there is no object.
	GetVersion(ctx context.Context, key string) (data []byte, version string, err error)
	// PutIfMatch stores data under key only if the object there still has
	// version; otherwise (also when it was deleted) it returns an error
	// wrapping ErrChanged and changes nothing.
	PutIfMatch(ctx context.Context, key string, data []byte, version string) error
}

// IsChanged reports whether err means a conditional replace lost to another
// writer.
func IsChanged(err error) bool { return errors.Is(err, ErrChanged) }

var (
	_ ConditionalBucket = (*S3)(nil)
	_ ConditionalBucket = (*Local)(nil)
	_ ConditionalBucket = (*Retrying)(nil)
	_ ConditionalBucket = (*Instrumented)(nil)
)

// GetVersion is one GET: the body and the ETag come from the same answer.
func (s *S3) GetVersion(ctx context.Context, key string) ([]byte, string, error) {
	fk, err := s.fullKey(key)
	if err != nil {
		return nil, "", fmt.Errorf("get %s: %w", key, err)
	}
	body, info, _, err := s.core.GetObject(ctx, s.cfg.Bucket, fk, minio.GetObjectOptions{})
	if err != nil {
		return nil, "", fmt.Errorf("get %s: %w", key, mapS3Error(err))
	}
	defer body.Close()
	data, err := io.ReadAll(body)
	if err != nil {
		return nil, "", fmt.Errorf("get %s: %w", key, err)
	}
	if info.ETag == "" {
		return nil, "", fmt.Errorf("get %s: %s answered without an ETag", key, s.Name())
	}
	return data, info.ETag, nil
}

// PutIfMatch is one PUT with If-Match: "<etag>" through minio.Core, like
// PutIfAbsent. 412 PreconditionFailed, 409 ConditionalRequestConflict and
// 404 (the object is gone) all mean another writer got there first.
func (s *S3) PutIfMatch(ctx context.Context, key string, data []byte, version string) error {
	fk, err := s.fullKey(key)
	if err != nil {
		return fmt.Errorf("put-if-match %s: %w", key, err)
	}
	if version == "" {
		return fmt.Errorf("put-if-match %s: empty version (create absent objects with PutIfAbsent)", key)
	}
	sum := md5.Sum(data)
	sha := sha256.Sum256(data)
	opts := conditionalPutOptions()
	opts.SetMatchETag(version)
	_, err = s.core.PutObject(ctx, s.cfg.Bucket, fk, bytes.NewReader(data), int64(len(data)),
		base64.StdEncoding.EncodeToString(sum[:]), hex.EncodeToString(sha[:]), opts)
	if err != nil {
		var resp minio.ErrorResponse
		if errors.As(err, &resp) && (resp.StatusCode == http.StatusPreconditionFailed || resp.Code == "PreconditionFailed" ||
			resp.Code == "ConditionalRequestConflict" || resp.Code == "NoSuchKey" || resp.StatusCode == http.StatusNotFound && resp.Code != "NoSuchBucket") {
			return fmt.Errorf("put-if-match %s: %w (%v)", key, ErrChanged, err)
		}
		return fmt.Errorf("put-if-match %s: %w", key, mapS3Error(err))
	}
	return nil
}

// conditionalPutOptions are the options of a conditional PUT. Its payload
// is signed whole (the SHA-256 the caller computed) instead of in
// aws-chunked streaming form, which minio-go uses over plain HTTP: a
// server may answer 412 as soon as it has the headers and close the
// connection (versitygw does), and a client still writing the final chunk
// then sees a broken pipe instead of the answer. Signed whole, a small
// body goes out with its headers. Over TLS minio-go signs whole anyway.
func conditionalPutOptions() minio.PutObjectOptions {
	return minio.PutObjectOptions{ContentType: "application/octet-stream", DisableContentSha256: true}
}

// localVersion is the version of a local object: a hash of its bytes, as an
// S3 ETag is for objects put in one part.
func localVersion(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:16])
}

// GetVersion reads the object; its version is a hash of the bytes read.
func (l *Local) GetVersion(ctx context.Context, key string) ([]byte, string, error) {
	rc, err := l.Get(ctx, key)
	if err != nil {
		return nil, "", err
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		return nil, "", fmt.Errorf("get %s: %w", key, err)
	}
	return data, localVersion(data), nil
}

// PutIfMatch takes an exclusive flock(2) on the file the key names, checks
// that the key still names that file and that its bytes are still version,
// and renames a fsynced temporary file over it while holding the lock. It
// is atomic against other PutIfMatch calls on the key, in any process
// sharing the directory; a plain Put or Delete racing with it is not
// coordinated (writers that need this use only conditional writes).
func (l *Local) PutIfMatch(ctx context.Context, key string, data []byte, version string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("put-if-match %s: %w", key, err)
	}
	p, err := l.path(key)
	if err != nil {
		return fmt.Errorf("put-if-match %s: %w", key, err)
	}
	for {
		f, err := os.Open(p)
		if err != nil {
			if errors.Is(mapNotExist(err), ErrNotExist) {
				return fmt.Errorf("put-if-match %s: %w (it is gone)", key, ErrChanged)
			}
			return fmt.Errorf("put-if-match %s: %w", key, err)
		}
		done, err := l.replaceLocked(ctx, f, p, data, version)
		f.Close() // also releases the lock
		if done {
			if err != nil {
				return fmt.Errorf("put-if-match %s: %w", key, err)
			}
			return nil
		}
		// The key was replaced between open and lock: lock the new file.
	}
}

// replaceLocked does PutIfMatch's work on the opened file f; done is false
// when f is no longer the file at p and the caller must start over.
func (l *Local) replaceLocked(ctx context.Context, f *os.File, p string, data []byte, version string) (done bool, err error) {
	if err := flockCtx(ctx, f); err != nil {
		return true, err
	}
	held, err := f.Stat()
	if err != nil {
		return true, err
	}
	now, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return true, fmt.Errorf("%w (it is gone)", ErrChanged)
	}
	if err != nil {
		return true, err
	}
	if !os.SameFile(held, now) {
		return false, nil
	}
	cur, err := io.ReadAll(f)
	if err != nil {
		return true, err
	}
	if localVersion(cur) != version {
		return true, ErrChanged
	}
	tmp, err := l.writeTemp(ctx, p, bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return true, err
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return true, err
	}
	return true, syncDir(filepath.Dir(p))
}

// flockCtx takes an exclusive lock on f, polling so that ctx can end the
// wait; holders keep it only for one small write.
func flockCtx(ctx context.Context, f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			return fmt.Errorf("flock: %w", err)
		}
		t := time.NewTimer(time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

func asConditional(b Bucket) (ConditionalBucket, error) {
	if c, ok := b.(ConditionalBucket); ok {
		return c, nil
	}
	return nil, fmt.Errorf("conditional replace on %s: %w", b.Name(), ErrUnsupported)
}

// GetVersion retries opening and reading the object.
func (r *Retrying) GetVersion(ctx context.Context, key string) (data []byte, version string, err error) {
	c, err := asConditional(r.b)
	if err != nil {
		return nil, "", err
	}
	err = r.do(ctx, opGet, key, func(ctx context.Context) error {
		data, version, err = c.GetVersion(ctx, key)
		return err
	})
	return data, version, err
}

// PutIfMatch retries transient failures. As with PutIfAbsent, after a retry
// ErrChanged may mean this call's own earlier attempt landed; callers that
// must tell these apart compare the stored object with theirs.
func (r *Retrying) PutIfMatch(ctx context.Context, key string, data []byte, version string) error {
	c, err := asConditional(r.b)
	if err != nil {
		return err
	}
	return r.do(ctx, opPutIfMatch, key, func(ctx context.Context) error { return c.PutIfMatch(ctx, key, data, version) })
}

// GetVersion counts as a get.
func (in *Instrumented) GetVersion(ctx context.Context, key string) ([]byte, string, error) {
	c, err := asConditional(in.b)
	if err != nil {
		return nil, "", err
	}
	start := time.Now()
	data, version, err := c.GetVersion(ctx, key)
	in.observe(opGet, start, err, ErrNotExist)
	if err == nil {
		in.bytesRead.Add(float64(len(data)))
	}
	return data, version, err
}

// PutIfMatch counts a lost race as an outcome, not a failure.
func (in *Instrumented) PutIfMatch(ctx context.Context, key string, data []byte, version string) error {
	c, err := asConditional(in.b)
	if err != nil {
		return err
	}
	start := time.Now()
	err = c.PutIfMatch(ctx, key, data, version)
	in.observe(opPutIfMatch, start, err, ErrChanged)
	if err == nil {
		in.bytesWritten.Add(float64(len(data)))
	}
	return err
}
