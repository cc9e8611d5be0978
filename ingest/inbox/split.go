package inbox

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/sluicehq/sluice/schema"
)

// Compressions once known (the inbox's "auto" is resolved per file).
const (
	CompNone = "none"
	CompGzip = "gzip"
	CompZstd = "zstd"
)

// Ignored reports whether a key is skipped by rule, whatever its content:
// markers that tools write next to their output (_SUCCESS, _committed_...,
// dotfiles such as .crc or .DS_Store) and directory markers.
func Ignored(key string) bool {
	if strings.HasSuffix(key, "/") {
		return true
	}
	base := path.Base(key)
	return strings.HasPrefix(base, "_") || strings.HasPrefix(base, ".")
}

// detectCompression resolves the configured compression for one file: by
// its first bytes (head holds the first 4 where the file has them), which
// do not lie, and by its name only for a file too short to tell.
func detectCompression(configured, key string, head []byte) string {
	if configured != "" && configured != "auto" {
		return configured
	}
	switch {
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		return CompGzip
	case bytes.HasPrefix(head, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return CompZstd
	case len(head) >= 4:
		return CompNone
	}
	switch strings.ToLower(path.Ext(key)) {
	case ".gz", ".gzip":
		return CompGzip
	case ".zst", ".zstd":
		return CompZstd
	}
	return CompNone
}

// PlanSplits cuts a file into splits: uncompressed JSON lines and CSV by
// byte ranges of about splitBytes (each split owns the lines that start in
// its range, so a split boundary may fall anywhere); compressed files whole
// (a gzip or zstd stream cannot be entered in the middle). Parquet is split
// by row group once its footer is read (see planParquet).
func PlanSplits(format, compression string, size, splitBytes int64) []Split {
	if compression != CompNone || size <= splitBytes || splitBytes <= 0 {
		return []Split{{Index: 0, Start: 0, End: size}}
	}
	n := (size + splitBytes - 1) / splitBytes
	out := make([]Split, 0, n)
	for i := range n {
		out = append(out, Split{Index: int(i), Start: i * splitBytes, End: min((i+1)*splitBytes, size)})
	}
	return out
}

// decompress wraps r for the file's compression.
func decompress(r io.Reader, compression string) (io.ReadCloser, error) {
	switch compression {
	case CompGzip:
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		return zr, nil
	case CompZstd:
		zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		return zr.IOReadCloser(), nil
	}
	return io.NopCloser(r), nil
}

// lineReader yields the lines of a split: positions count every line of
// the split from 0 (blank ones too, so a position is a line number), and
// reading stops after the last line that starts before the split's end.
type lineReader struct {
	br      *bufio.Reader
	offset  int64 // byte offset of the next line in the file
	at      int64 // byte offset of the line next returned
	end     int64 // lines starting at or after end belong to the next split; <0: none
	pos     int64 // the next line's position
	maxLine int   // longer lines are cut to maxLine+1 bytes (the decoder refuses them)
	buf     []byte
}

// newLineReader reads the split from r, which starts at byte start-1 of
// the file if start > 0 (to find the first line boundary), else at 0.
func newLineReader(r io.Reader, start, end int64, maxLine int) (*lineReader, error) {
	lr := &lineReader{br: bufio.NewReaderSize(r, 256<<10), offset: start, end: end, maxLine: maxLine}
	if start > 0 {
		// The line holding byte start-1 belongs to the previous split.
		n, err := lr.skipLine()
		lr.offset = start - 1 + n
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
	}
	return lr, nil
}

// skipLine consumes through the next newline and reports the bytes consumed.
func (lr *lineReader) skipLine() (int64, error) {
	var n int64
	for {
		chunk, err := lr.br.ReadSlice('\n')
		n += int64(len(chunk))
		if err == nil {
			return n, nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return n, err
		}
	}
}

// next returns the next line without its line ending, its position, and
// io.EOF after the split's last line. The line is valid until the next call.
func (lr *lineReader) next() ([]byte, int64, error) {
	if lr.end >= 0 && lr.offset >= lr.end {
		return nil, 0, io.EOF
	}
	lr.buf = lr.buf[:0]
	var n int64
	for {
		chunk, err := lr.br.ReadSlice('\n')
		n += int64(len(chunk))
		if len(lr.buf) <= lr.maxLine {
			lr.buf = append(lr.buf, chunk[:min(len(chunk), lr.maxLine+1-len(lr.buf))]...)
		}
		if err == nil {
			break
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if errors.Is(err, io.EOF) {
			if n == 0 {
				return nil, 0, io.EOF
			}
			break
		}
		return nil, 0, err
	}
	lr.at = lr.offset
	lr.offset += n
	line := bytes.TrimRight(lr.buf, "\r\n")
	pos := lr.pos
	lr.pos++
	return line, pos, nil
}

// csvConverter turns CSV lines into the JSON objects the decoder reads,
// named by the header. Cells of number, bool and numeric-time fields are
// passed as JSON literals when they are ones, so the decoder's own checks
// (and dead-letter reasons) apply; empty cells are null.
type csvConverter struct {
	names   []string
	literal []bool // the column's field takes JSON literals
	out     bytes.Buffer
}

func newCSVConverter(t *schema.Table, header []byte) (*csvConverter, error) {
	rec, err := csv.NewReader(bytes.NewReader(header)).Read()
	if err != nil {
		return nil, fmt.Errorf("csv header: %w", err)
	}
	byPath := map[string]schema.Field{}
	for _, f := range t.Fields {
		p := f.Path
		if p == "" {
			p = f.Name
		}
		byPath[p] = f
	}
	c := &csvConverter{}
	for _, name := range rec {
		name = strings.TrimSpace(strings.TrimPrefix(name, "\ufeff"))
		c.names = append(c.names, name)
		f, ok := byPath[name]
		lit := ok && (f.Type == schema.TypeInt64 || f.Type == schema.TypeFloat64 || f.Type == schema.TypeBool ||
			f.Type == schema.TypeTimestamp && strings.HasPrefix(f.Format, "unix"))
		c.literal = append(c.literal, lit)
	}
	return c, nil
}

// convert returns the line as a JSON object, or the line itself when it is
// not CSV (the decoder then refuses it, keeping the original bytes).
func (c *csvConverter) convert(line []byte) []byte {
	rec, err := csv.NewReader(bytes.NewReader(line)).Read()
	if err != nil || len(rec) != len(c.names) {
		return line
	}
	c.out.Reset()
	c.out.WriteByte('{')
	for i, cell := range rec {
		if i > 0 {
			c.out.WriteByte(',')
		}
		name, _ := json.Marshal(c.names[i])
		c.out.Write(name)
		c.out.WriteByte(':')
		switch {
		case cell == "":
			c.out.WriteString("null")
		case c.literal[i] && isLiteral(cell):
			c.out.WriteString(cell)
		default:
			v, _ := json.Marshal(cell)
			c.out.Write(v)
		}
	}
	c.out.WriteByte('}')
	return c.out.Bytes()
}

func isLiteral(s string) bool {
	if s == "true" || s == "false" {
		return true
	}
	_, err := strconv.ParseFloat(s, 64)
	return err == nil && !strings.ContainsAny(s, "xXpP_nN") // JSON numbers only (no hex, NaN, Inf)
}
