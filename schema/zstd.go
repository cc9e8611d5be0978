package schema

import (
	"runtime"

	kzstd "github.com/klauspost/compress/zstd"
	"github.com/parquet-go/parquet-go/compress"
	pzstd "github.com/parquet-go/parquet-go/compress/zstd"
	"github.com/parquet-go/parquet-go/format"
)

// ZstdFastest compresses Parquet pages, raw objects' and summaries' alike:
// zstd at its fastest level, the frames parquet-go's zstd codec writes
// (the same options, so the same bytes), through encoders kept for the
// process. parquet-go's codec keeps its encoders in a sync.Pool, which
// every collection empties, and each new encoder allocated and cleared its
// history buffers again: 7% of an aggregation pass's allocations, and in
// the flat-out load test (four collections a second) 6% of all
// allocations and most of the time spent clearing fresh memory.
var ZstdFastest compress.Codec = newZstdCodec()

type zstdCodec struct {
	enc *kzstd.Encoder
	dec pzstd.Codec // reading is parquet-go's
}

func newZstdCodec() *zstdCodec {
	enc, err := kzstd.NewWriter(nil,
		kzstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)), // EncodeAll calls at once, each with an encoder of its own
		kzstd.WithEncoderLevel(kzstd.SpeedFastest),
		kzstd.WithZeroFrames(true),
		kzstd.WithEncoderCRC(false),
	)
	if err != nil {
		panic(err) // only for invalid options
	}
	return &zstdCodec{enc: enc, dec: pzstd.Codec{Level: pzstd.SpeedFastest}}
}

func (c *zstdCodec) String() string { return c.dec.String() }

func (c *zstdCodec) CompressionCodec() format.CompressionCodec { return c.dec.CompressionCodec() }

func (c *zstdCodec) Encode(dst, src []byte) ([]byte, error) {
	return c.enc.EncodeAll(src, dst[:0]), nil
}

func (c *zstdCodec) Decode(dst, src []byte) ([]byte, error) { return c.dec.Decode(dst, src) }
