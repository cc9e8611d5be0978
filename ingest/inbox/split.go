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

// PlanSplits cuts a file into splits: uncompressed JSON lines by byte
// ranges of about splitBytes (each split owns the lines that start in its
// range, so a split boundary may fall anywhere); compressed files whole
// (a gzip or zstd stream cannot be entered in the middle). Plan moves the
// cuts of a CSV file to record starts (planCSVSplits), and splits Parquet
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

// lineReader yields the records of a split: for JSON lines a record is a
// line; for CSV (quoted set) a record is a line joined with the lines
// after it while a quoted field is open, as RFC 4180 allows newlines in
// quoted fields. Positions count every record of the split from 0 (blank
// lines too, so for files of one-line records a position is a line
// number), and reading stops after the last record that starts before the
// split's end.
type lineReader struct {
	br      *bufio.Reader
	offset  int64 // byte offset of the next record in the file
	at      int64 // byte offset of the record last returned
	end     int64 // records starting at or after end belong to the next split; <0: none
	pos     int64 // the next record's position
	maxLine int   // longer records are cut to maxLine+1 bytes (the decoder refuses them)
	buf     []byte

	// quoted makes a record run on past a newline inside double quotes.
	// A stray quote (a malformed line) must cost that line only, so a
	// record of several lines is kept only if it reads as one CSV record
	// and fits in maxLine; otherwise the reader backs off to its first
	// line (which the decoder refuses) and reads the rest again.
	quoted  bool
	pending []byte // bytes read but given back by a back-off, read before br
	lines   int64  // physical lines read (from the reader's start)
	atLine  int64  // the physical line, from the reader's start, where the last record began
}

// newLineReader reads the split from r, which starts at byte start-1 of
// the file if start > 0 (to find the first line boundary), else at 0.
// For CSV, set quoted before the first next: split starts are then record
// starts (planCSVSplits places them), and only the newline before start is
// skipped.
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

// readSlice is bufio's ReadSlice('\n') over the given-back bytes first.
func (lr *lineReader) readSlice() ([]byte, error) {
	if len(lr.pending) == 0 {
		return lr.br.ReadSlice('\n')
	}
	i := bytes.IndexByte(lr.pending, '\n')
	if i < 0 {
		chunk := lr.pending
		lr.pending = nil
		return chunk, bufio.ErrBufferFull // the line goes on in br
	}
	chunk := lr.pending[:i+1]
	lr.pending = lr.pending[i+1:]
	return chunk, nil
}

// next returns the next record without its line ending, its position, and
// io.EOF after the split's last record. The record is valid until the next
// call.
func (lr *lineReader) next() ([]byte, int64, error) {
	if lr.end >= 0 && lr.offset >= lr.end {
		return nil, 0, io.EOF
	}
	lr.buf = lr.buf[:0]
	lr.atLine = lr.lines
	var n, lines int64
	firstLine := int64(-1) // bytes of the record's first line, once it runs on past it
	inQuotes, backOff := false, false
	for {
		chunk, err := lr.readSlice()
		n += int64(len(chunk))
		if firstLine >= 0 || len(lr.buf) <= lr.maxLine {
			// A record running on is kept whole (it is at most maxLine
			// plus a chunk), to be given back if it backs off.
			keep := len(chunk)
			if firstLine < 0 {
				keep = min(keep, lr.maxLine+1-len(lr.buf))
			}
			lr.buf = append(lr.buf, chunk[:keep]...)
		}
		if lr.quoted && bytes.Count(chunk, quote)%2 == 1 {
			// An escaped quote is written twice, so the parity of the
			// quotes seen says whether a quoted field is open.
			inQuotes = !inQuotes
		}
		if err == nil {
			lines++
			if !inQuotes {
				break
			}
			if firstLine < 0 {
				firstLine = n
			}
			if n > int64(lr.maxLine) {
				backOff = true
				break
			}
			continue // the newline is inside a quoted field
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			if firstLine >= 0 && n > int64(lr.maxLine) {
				backOff = true
				break
			}
			continue
		}
		if errors.Is(err, io.EOF) {
			if n == 0 {
				return nil, 0, io.EOF
			}
			lines++
			break // an unclosed quote at the end reads as no CSV record: it backs off below
		}
		return nil, 0, err
	}
	if firstLine >= 0 && (backOff || !oneCSVRecord(lr.buf)) {
		// Give back all but the first line, to be read again.
		lr.pending = append(bytes.Clone(lr.buf[firstLine:]), lr.pending...)
		lr.buf, n, lines = lr.buf[:firstLine], firstLine, 1
	}
	lr.buf = lr.buf[:min(len(lr.buf), lr.maxLine+1)]
	lr.lines += lines
	lr.at = lr.offset
	lr.offset += n
	line := bytes.TrimRight(lr.buf, "\r\n")
	pos := lr.pos
	lr.pos++
	return line, pos, nil
}

// oneCSVRecord reports whether rec reads as exactly one CSV record.
func oneCSVRecord(rec []byte) bool {
	r := csv.NewReader(bytes.NewReader(rec))
	r.FieldsPerRecord = -1
	if _, err := r.Read(); err != nil {
		return false
	}
	_, err := r.Read()
	return errors.Is(err, io.EOF)
}

var quote = []byte{'"'}

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
