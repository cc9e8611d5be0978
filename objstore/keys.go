package objstore

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// ErrInvalidKey is wrapped by errors about keys no backend accepts. Every
// backend applies the same rules so that data written to a local directory
// can move to S3 and back unchanged.
var ErrInvalidKey = errors.New("invalid object key")

// tmpPrefix starts the names of the local bucket's temporary files. Keys with
// a segment starting with it are refused so that Iter can skip temporaries
// without hiding real objects.
const tmpPrefix = ".sluice-tmp-"

// maxKeyLen is S3's limit, applied everywhere for the same reason as above.
const maxKeyLen = 1024

// ValidateKey reports why key cannot name an object: empty, too long, not
// UTF-8, absolute, with an empty, "." or ".." segment, with a NUL byte, or
// with a segment reserved for temporary files.
func ValidateKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: empty", ErrInvalidKey)
	case len(key) > maxKeyLen:
		return fmt.Errorf("%w: %d bytes, more than %d", ErrInvalidKey, len(key), maxKeyLen)
	case !utf8.ValidString(key):
		return fmt.Errorf("%w: %q is not UTF-8", ErrInvalidKey, key)
	case strings.ContainsRune(key, 0):
		return fmt.Errorf("%w: %q contains a NUL byte", ErrInvalidKey, key)
	case strings.HasPrefix(key, "/"):
		return fmt.Errorf("%w: %q is absolute", ErrInvalidKey, key)
	}
	for _, seg := range strings.Split(key, "/") {
		switch {
		case seg == "":
			return fmt.Errorf("%w: %q has an empty segment", ErrInvalidKey, key)
		case seg == "." || seg == "..":
			return fmt.Errorf("%w: %q has a %q segment", ErrInvalidKey, key, seg)
		case strings.HasPrefix(seg, tmpPrefix):
			return fmt.Errorf("%w: %q uses the reserved prefix %q", ErrInvalidKey, key, tmpPrefix)
		}
	}
	return nil
}
