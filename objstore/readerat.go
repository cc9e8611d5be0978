package objstore

import (
	"context"
	"fmt"
	"io"
)

// NewReaderAt gives random access to the object key of size bytes with
// ranged GETs of whole blocks, a few of them cached, so that the many small
// reads a Parquet reader makes (footer, page headers) do not each cost a
// round trip. It is not safe for concurrent use.
func NewReaderAt(ctx context.Context, b BucketReader, key string, size int64) io.ReaderAt {
	return &blockReaderAt{ctx: ctx, b: b, key: key, size: size, blocks: make(map[int64][]byte)}
}

type blockReaderAt struct {
	ctx    context.Context
	b      BucketReader
	key    string
	size   int64
	blocks map[int64][]byte
	order  []int64 // for eviction, oldest first
}

const (
	readerAtBlockSize = 1 << 20
	readerAtMaxBlocks = 32
)

func (r *blockReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read %s at %d: negative offset", r.key, off)
	}
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		if pos >= r.size {
			return n, io.EOF
		}
		blk, err := r.block(pos / readerAtBlockSize)
		if err != nil {
			return n, err
		}
		n += copy(p[n:], blk[pos%readerAtBlockSize:])
	}
	return n, nil
}

func (r *blockReaderAt) block(i int64) ([]byte, error) {
	if blk, ok := r.blocks[i]; ok {
		return blk, nil
	}
	start := i * readerAtBlockSize
	length := min(int64(readerAtBlockSize), r.size-start)
	rc, err := r.b.GetRange(r.ctx, r.key, start, length)
	if err != nil {
		return nil, fmt.Errorf("read %s [%d, %d): %w", r.key, start, start+length, err)
	}
	defer rc.Close()
	blk := make([]byte, length)
	if _, err := io.ReadFull(rc, blk); err != nil {
		return nil, fmt.Errorf("read %s [%d, %d): %w", r.key, start, start+length, err)
	}
	if len(r.order) >= readerAtMaxBlocks {
		delete(r.blocks, r.order[0])
		r.order = r.order[1:]
	}
	r.blocks[i] = blk
	r.order = append(r.order, i)
	return blk, nil
}
