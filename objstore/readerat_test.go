package objstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"testing"
)

func TestReaderAt(t *testing.T) {
	dir := t.TempDir()
	b, err := NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 2*readerAtBlockSize+12345)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := b.Put(ctx, "obj", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	r := NewReaderAt(ctx, b, "obj", int64(len(data))).(*blockReaderAt)
	tests := []struct {
		name    string
		off, n  int64
		wantN   int
		wantEOF bool
	}{
		{name: "start", off: 0, n: 100, wantN: 100},
		{name: "across blocks", off: readerAtBlockSize - 10, n: 20, wantN: 20},
		{name: "span three blocks", off: 10, n: 2*readerAtBlockSize + 100, wantN: 2*readerAtBlockSize + 100},
		{name: "tail", off: int64(len(data)) - 8, n: 8, wantN: 8},
		{name: "past end", off: int64(len(data)) - 8, n: 16, wantN: 8, wantEOF: true},
		{name: "at end", off: int64(len(data)), n: 1, wantN: 0, wantEOF: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := make([]byte, tc.n)
			n, err := r.ReadAt(p, tc.off)
			if n != tc.wantN || (err == io.EOF) != tc.wantEOF || (err != nil && err != io.EOF) {
				t.Fatalf("ReadAt = %d, %v; want %d, EOF %v", n, err, tc.wantN, tc.wantEOF)
			}
			if !bytes.Equal(p[:n], data[tc.off:tc.off+int64(n)]) {
				t.Fatal("bytes differ")
			}
		})
	}
	if len(r.blocks) > readerAtMaxBlocks {
		t.Fatalf("%d cached blocks", len(r.blocks))
	}
}
