package schema

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"unicode/utf8"
	"unsafe"
)

// This file is the decoder's JSON scanner: one pass over the record that
// validates the whole text (RFC 8259, UTF-8 included) and stores the values of
// the table's fields in Decoder.slots. BenchmarkDecodeAlternatives measured
// it at ~2.5x the speed of goccy/go-json unmarshalling the sample event into a
// reflect.StructOf struct (2.5M vs 1.0M events/s, 0 vs 15 allocations), and
// goccy would still have needed a second pass for what it does not check
// (absent vs null per field, strict validation of skipped values, exact
// integers, timestamps).

// byte classes inside a JSON string
const (
	chPlain   = 0
	chQuote   = 1
	chEscape  = 2
	chControl = 3
	chHigh    = 4
)

var strClass = func() (t [256]byte) {
	for i := 0; i < 0x20; i++ {
		t[i] = chControl
	}
	t['"'] = chQuote
	t['\\'] = chEscape
	for i := 0x80; i < 0x100; i++ {
		t[i] = chHigh
	}
	return t
}()

func (d *Decoder) scan(value []byte) *RecordError {
	for i := range d.slots {
		d.slots[i].state = slotAbsent
	}
	d.buf = d.buf[:0]
	d.data = value
	d.pos = 0
	d.synErr = nil
	d.semErr = nil
	d.skipWS()
	if d.pos >= len(d.data) {
		return &RecordError{Reason: ReasonMalformedJSON, Detail: "empty record"}
	}
	if d.data[d.pos] != '{' {
		kind := jsonKind(d.data[d.pos])
		if !d.skipValue(1) {
			return d.synErr
		}
		if d.skipWS(); d.pos != len(d.data) {
			return d.syntax("unexpected data after the top-level value")
		}
		return &RecordError{Reason: ReasonNotObject, Detail: "top-level value is " + kind + ", want an object"}
	}
	d.pos++
	if !d.parseObject(d.root, 1) {
		return d.synErr
	}
	if d.skipWS(); d.pos != len(d.data) {
		return d.syntax("unexpected data after the top-level object")
	}
	return d.semErr
}

func (d *Decoder) syntax(detail string) *RecordError {
	if d.synErr == nil {
		d.synErr = &RecordError{Reason: ReasonMalformedJSON, Detail: fmt.Sprintf("at byte %d: %s", d.pos, detail)}
	}
	return d.synErr
}

func (d *Decoder) fail(detail string) bool {
	d.syntax(detail)
	return false
}

func (d *Decoder) failUnexpected() bool {
	if d.pos >= len(d.data) {
		return d.fail("unexpected end of input")
	}
	return d.fail(fmt.Sprintf("invalid character %s", quoteByte(d.data[d.pos])))
}

func quoteByte(c byte) string {
	if c >= 0x20 && c < 0x7f {
		return strconv.QuoteRune(rune(c))
	}
	return fmt.Sprintf("0x%02x", c)
}

func (d *Decoder) semantic(reason Reason, field int, detail string) {
	if d.semErr == nil {
		d.semErr = &RecordError{Reason: reason, Field: d.fields[field].name, Detail: detail}
	}
}

func (d *Decoder) skipWS() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

// parseObject reads the members of an object whose '{' was consumed, storing
// the fields that node knows and validating the rest.
func (d *Decoder) parseObject(node *pathNode, depth int) bool {
	d.skipWS()
	if d.pos < len(d.data) && d.data[d.pos] == '}' {
		d.pos++
		return true
	}
	for {
		if d.pos >= len(d.data) || d.data[d.pos] != '"' {
			if d.pos < len(d.data) {
				return d.fail("expected an object key")
			}
			return d.failUnexpected()
		}
		d.pos++
		mark := len(d.buf)
		key, ok := d.scanString()
		if !ok {
			return false
		}
		d.skipWS()
		if d.pos >= len(d.data) || d.data[d.pos] != ':' {
			if d.pos < len(d.data) {
				return d.fail("expected ':' after an object key")
			}
			return d.failUnexpected()
		}
		d.pos++
		d.skipWS()
		var kid *pathKid
		if node != nil {
			kid = node.lookup(key)
		}
		d.buf = d.buf[:mark] // an unescaped key is not needed past the lookup
		switch {
		case kid == nil:
			if !d.skipValue(depth + 1) {
				return false
			}
		case kid.field >= 0:
			if !d.parseField(kid.field, depth) {
				return false
			}
		default:
			if !d.parseNested(kid.node, depth) {
				return false
			}
		}
		d.skipWS()
		if d.pos >= len(d.data) {
			return d.failUnexpected()
		}
		switch d.data[d.pos] {
		case ',':
			d.pos++
			d.skipWS()
		case '}':
			d.pos++
			return true
		default:
			return d.fail("expected ',' or '}' after an object member")
		}
	}
}

// parseNested reads the value of a key that leads to nested fields.
func (d *Decoder) parseNested(node *pathNode, depth int) bool {
	// Last key wins: a repeated key replaces everything read under it before.
	for _, f := range node.fields {
		d.slots[f].state = slotAbsent
	}
	if d.pos >= len(d.data) {
		return d.failUnexpected()
	}
	switch d.data[d.pos] {
	case '{':
		if depth+1 > maxDepth {
			return d.fail(fmt.Sprintf("nesting deeper than %d", maxDepth))
		}
		d.pos++
		return d.parseObject(node, depth+1)
	case 'n':
		// null object: its fields are absent
		return d.literal("null")
	}
	f := node.fields[0]
	d.semantic(ReasonWrongType, f, fmt.Sprintf("expected an object on its path, got %s", jsonKind(d.data[d.pos])))
	return d.skipValue(depth + 1)
}

func jsonKind(c byte) string {
	switch {
	case c == '"':
		return "a string"
	case c == '{':
		return "an object"
	case c == '[':
		return "an array"
	case c == 't' || c == 'f':
		return "a boolean"
	case c == 'n':
		return "null"
	case c == '-' || isDigit(c):
		return "a number"
	}
	return "an invalid value"
}

// literal consumes the exact literal lit (true, false, null).
func (d *Decoder) literal(lit string) bool {
	if len(d.data)-d.pos >= len(lit) && string(d.data[d.pos:d.pos+len(lit)]) == lit {
		d.pos += len(lit)
		return true
	}
	return d.fail("invalid literal, want " + lit)
}

// wrongType records a type mismatch for field f and skips (validating) the value.
func (d *Decoder) wrongType(f int, want string, depth int) bool {
	reason := ReasonWrongType
	if d.fields[f].eventTime {
		reason = ReasonBadEventTime
	}
	d.semantic(reason, f, fmt.Sprintf("expected %s, got %s", want, jsonKind(d.data[d.pos])))
	return d.skipValue(depth + 1)
}

func (d *Decoder) parseField(f int, depth int) bool {
	if d.pos >= len(d.data) {
		return d.failUnexpected()
	}
	sl := &d.slots[f]
	c := d.data[d.pos]
	if c == 'n' {
		if !d.literal("null") {
			return false
		}
		sl.state = slotNull
		return true
	}
	p := &d.fields[f]
	switch p.kind {
	case kindString:
		if c != '"' {
			return d.wrongType(f, "a string", depth)
		}
		d.pos++
		s, ok := d.scanString()
		if !ok {
			return false
		}
		sl.s, sl.state = s, slotSet
	case kindInt64:
		if c != '-' && !isDigit(c) {
			return d.wrongType(f, "an integer", depth)
		}
		n, ok := d.scanNumber()
		if !ok {
			return false
		}
		v, res := d.scaledInt(n, 0, false)
		switch res {
		case numOK:
			sl.i, sl.state = v, slotSet
		case numNotIntegral:
			d.semantic(ReasonWrongType, f, fmt.Sprintf("expected an integer, got %s", d.data[n.start:n.end]))
		case numOverflow:
			d.semantic(ReasonNumberOutOfRange, f, fmt.Sprintf("%s does not fit in int64", clip(d.data[n.start:n.end])))
		}
	case kindFloat64:
		if c != '-' && !isDigit(c) {
			return d.wrongType(f, "a number", depth)
		}
		n, ok := d.scanNumber()
		if !ok {
			return false
		}
		v, ok := d.float(n)
		if !ok {
			d.semantic(ReasonNumberOutOfRange, f, fmt.Sprintf("%s does not fit in float64", clip(d.data[n.start:n.end])))
			return true
		}
		sl.f, sl.state = v, slotSet
	case kindBool:
		switch c {
		case 't':
			if !d.literal("true") {
				return false
			}
			sl.i, sl.state = 1, slotSet
		case 'f':
			if !d.literal("false") {
				return false
			}
			sl.i, sl.state = 0, slotSet
		default:
			return d.wrongType(f, "a boolean", depth)
		}
	case kindTimestamp:
		return d.parseTimestamp(f, c, depth)
	}
	return true
}

func (d *Decoder) parseTimestamp(f int, c byte, depth int) bool {
	p := &d.fields[f]
	sl := &d.slots[f]
	bad := func(detail string) {
		reason := ReasonWrongType
		if p.eventTime {
			reason = ReasonBadEventTime
		}
		d.semantic(reason, f, detail)
	}
	if p.format == tsRFC3339 || p.format == tsLayout {
		if c != '"' {
			return d.wrongType(f, "a timestamp string", depth)
		}
		d.pos++
		s, ok := d.scanString()
		if !ok {
			return false
		}
		var us int64
		if p.format == tsRFC3339 {
			us, ok = parseRFC3339Micros(s)
		} else {
			us, ok = parseLayoutMicros(p.layout, s)
		}
		if !ok {
			want := "RFC 3339"
			if p.format == tsLayout {
				want = "layout " + strconv.Quote(p.layout)
			}
			bad(fmt.Sprintf("cannot parse %q as %s", clip(s), want))
			return true
		}
		sl.i, sl.state = us, slotSet
		return true
	}
	scale := 0
	switch p.format {
	case tsUnixS:
		scale = 6
	case tsUnixMS:
		scale = 3
	}
	var (
		v   int64
		res numResult
		txt []byte
	)
	switch {
	case c == '-' || isDigit(c):
		n, ok := d.scanNumber()
		if !ok {
			return false
		}
		v, res = d.scaledInt(n, scale, true)
		txt = d.data[n.start:n.end]
	case c == '"':
		// Numeric strings are common from producers that quote everything.
		d.pos++
		s, ok := d.scanString()
		if !ok {
			return false
		}
		sub := Decoder{data: s}
		n, ok := sub.scanNumber()
		if !ok || sub.pos != len(s) {
			bad(fmt.Sprintf("cannot parse %q as a number", clip(s)))
			return true
		}
		v, res = sub.scaledInt(n, scale, true)
		txt = s
	default:
		return d.wrongType(f, "a Unix timestamp number", depth)
	}
	if res != numOK {
		// An event time that fits no int64 of microseconds is one that
		// cannot be read, like an unparsable string.
		reason := ReasonNumberOutOfRange
		if p.eventTime {
			reason = ReasonBadEventTime
		}
		d.semantic(reason, f, fmt.Sprintf("Unix time %s is out of range", clip(txt)))
		return true
	}
	sl.i, sl.state = v, slotSet
	return true
}

// clip shortens a value quoted in an error message.
func clip(b []byte) string {
	const max = 64
	if len(b) > max {
		return string(b[:max]) + "..."
	}
	return string(b)
}

// scanString reads a string whose opening quote was consumed and returns its
// content: a slice of the record when it has no escapes, else the unescaped
// bytes appended to d.buf.
func (d *Decoder) scanString() ([]byte, bool) {
	data := d.data
	start := d.pos
	i := d.pos
	for {
		i = skipPlain(data, i)
		for i < len(data) && strClass[data[i]] == chPlain {
			i++
		}
		if i >= len(data) {
			d.pos = i
			return nil, d.fail("unterminated string")
		}
		switch strClass[data[i]] {
		case chQuote:
			d.pos = i + 1
			return data[start:i], true
		case chHigh:
			r, size := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && size <= 1 {
				d.pos = i
				return nil, d.invalidUTF8(fmt.Sprintf("at byte %d: invalid UTF-8 in a string", i))
			}
			i += size
		case chControl:
			d.pos = i
			return nil, d.fail("control character in a string")
		case chEscape:
			d.pos = i
			return d.scanEscaped(start)
		}
	}
}

// Bytes that are 0x01, 0x20, '"' and '\\' in each of the eight lanes of a
// word, and the lanes' high bits.
const (
	lanes01    = 0x0101010101010101
	lanes20    = 0x20 * lanes01
	lanesQuote = '"' * lanes01
	lanesEsc   = '\\' * lanes01
	lanesHigh  = 0x80 * lanes01
)

// skipPlain returns the index of the first byte at or after i that may not
// be a plain string byte (a quote, a backslash, a control character or a
// byte of a multi-byte UTF-8 sequence), looking at eight bytes at a time;
// it stops short of the last seven bytes, which the caller looks at one by
// one. The byte-wise loop was a tenth of the decoder's time, most of it on
// ids and timestamps of 20 to 40 plain bytes.
func skipPlain(data []byte, i int) int {
	for i+8 <= len(data) {
		w := binary.LittleEndian.Uint64(data[i:])
		q := w ^ lanesQuote
		e := w ^ lanesEsc
		// A lane's high bit is set where the byte is zero after the xor
		// (a quote or a backslash), below 0x20, or has its own high bit
		// set. A borrow can only mark lanes above a marked one, so the
		// lowest mark is exact.
		m := ((q - lanes01) &^ q) | ((e - lanes01) &^ e) | ((w - lanes20) &^ w) | w
		if m &= lanesHigh; m != 0 {
			return i + bits.TrailingZeros64(m)/8
		}
		i += 8
	}
	return i
}

func (d *Decoder) invalidUTF8(detail string) bool {
	if d.synErr == nil {
		d.synErr = &RecordError{Reason: ReasonInvalidUTF8, Detail: detail}
	}
	return false
}

// scanEscaped continues scanString from the first backslash, copying the
// unescaped content to d.buf.
func (d *Decoder) scanEscaped(start int) ([]byte, bool) {
	data := d.data
	mark := len(d.buf)
	d.buf = append(d.buf, data[start:d.pos]...)
	i := d.pos
	for i < len(data) {
		c := data[i]
		switch strClass[c] {
		case chPlain:
			d.buf = append(d.buf, c)
			i++
		case chQuote:
			d.pos = i + 1
			return d.buf[mark:], true
		case chHigh:
			r, size := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && size <= 1 {
				d.pos = i
				return nil, d.invalidUTF8(fmt.Sprintf("at byte %d: invalid UTF-8 in a string", i))
			}
			d.buf = append(d.buf, data[i:i+size]...)
			i += size
		case chControl:
			d.pos = i
			return nil, d.fail("control character in a string")
		case chEscape:
			if i+1 >= len(data) {
				d.pos = i
				return nil, d.fail("unterminated escape")
			}
			e := data[i+1]
			i += 2
			switch e {
			case '"', '\\', '/':
				d.buf = append(d.buf, e)
			case 'b':
				d.buf = append(d.buf, '\b')
			case 'f':
				d.buf = append(d.buf, '\f')
			case 'n':
				d.buf = append(d.buf, '\n')
			case 'r':
				d.buf = append(d.buf, '\r')
			case 't':
				d.buf = append(d.buf, '\t')
			case 'u':
				r, ok := hex4(data, i)
				if !ok {
					d.pos = i
					return nil, d.fail(`invalid \u escape`)
				}
				i += 4
				if r >= 0xD800 && r < 0xDC00 {
					// high surrogate: a low one must follow
					lo := rune(-1)
					if i+1 < len(data) && data[i] == '\\' && data[i+1] == 'u' {
						if v, ok := hex4(data, i+2); ok && v >= 0xDC00 && v < 0xE000 {
							lo = v
						}
					}
					if lo < 0 {
						d.pos = i
						return nil, d.invalidUTF8(fmt.Sprintf(`at byte %d: lone surrogate \u%04X in a string`, i-6, r))
					}
					i += 6
					r = 0x10000 + (r-0xD800)<<10 + (lo - 0xDC00)
				} else if r >= 0xDC00 && r < 0xE000 {
					d.pos = i
					return nil, d.invalidUTF8(fmt.Sprintf(`at byte %d: lone surrogate \u%04X in a string`, i-6, r))
				}
				d.buf = utf8.AppendRune(d.buf, r)
			default:
				d.pos = i - 1
				return nil, d.fail("invalid escape " + quoteByte(e))
			}
		}
	}
	d.pos = i
	return nil, d.fail("unterminated string")
}

func hex4(data []byte, i int) (rune, bool) {
	if i+4 > len(data) {
		return 0, false
	}
	var r rune
	for _, c := range data[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// skipValue validates one value without storing it. depth is the nesting
// level a container starting here would have.
func (d *Decoder) skipValue(depth int) bool {
	if d.pos >= len(d.data) {
		return d.failUnexpected()
	}
	switch c := d.data[d.pos]; {
	case c == '"':
		d.pos++
		mark := len(d.buf)
		_, ok := d.scanString()
		d.buf = d.buf[:mark]
		return ok
	case c == '{', c == '[':
		if depth > maxDepth {
			return d.fail(fmt.Sprintf("nesting deeper than %d", maxDepth))
		}
		d.pos++
		if c == '{' {
			return d.parseObject(nil, depth)
		}
		return d.skipArray(depth)
	case c == 't':
		return d.literal("true")
	case c == 'f':
		return d.literal("false")
	case c == 'n':
		return d.literal("null")
	case c == '-' || isDigit(c):
		_, ok := d.scanNumber()
		return ok
	}
	return d.failUnexpected()
}

func (d *Decoder) skipArray(depth int) bool {
	d.skipWS()
	if d.pos < len(d.data) && d.data[d.pos] == ']' {
		d.pos++
		return true
	}
	for {
		if !d.skipValue(depth + 1) {
			return false
		}
		d.skipWS()
		if d.pos >= len(d.data) {
			return d.failUnexpected()
		}
		switch d.data[d.pos] {
		case ',':
			d.pos++
			d.skipWS()
		case ']':
			d.pos++
			return true
		default:
			return d.fail("expected ',' or ']' after an array element")
		}
	}
}

// number locates the parts of a JSON number in d.data.
type number struct {
	start, end         int
	neg                bool
	intStart, intEnd   int
	fracStart, fracEnd int
	exp                int // saturated at ±maxExp
}

const maxExp = 1_000_000

// scanNumber reads a number per the JSON grammar
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (d *Decoder) scanNumber() (number, bool) {
	data := d.data
	i := d.pos
	n := number{start: i}
	if i < len(data) && data[i] == '-' {
		n.neg = true
		i++
	}
	n.intStart = i
	switch {
	case i < len(data) && data[i] == '0':
		i++
	case i < len(data) && data[i] >= '1' && data[i] <= '9':
		for i < len(data) && isDigit(data[i]) {
			i++
		}
	default:
		d.pos = i
		return n, d.fail("invalid number")
	}
	n.intEnd = i
	n.fracStart, n.fracEnd = i, i
	if i < len(data) && data[i] == '.' {
		i++
		n.fracStart = i
		for i < len(data) && isDigit(data[i]) {
			i++
		}
		if i == n.fracStart {
			d.pos = i
			return n, d.fail("invalid number: no digits after '.'")
		}
		n.fracEnd = i
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		i++
		neg := false
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			neg = data[i] == '-'
			i++
		}
		es := i
		for i < len(data) && isDigit(data[i]) {
			if n.exp < maxExp {
				n.exp = n.exp*10 + int(data[i]-'0')
			}
			i++
		}
		if i == es {
			d.pos = i
			return n, d.fail("invalid number: no digits in exponent")
		}
		n.exp = min(n.exp, maxExp)
		if neg {
			n.exp = -n.exp
		}
	}
	n.end = i
	d.pos = i
	return n, true
}

type numResult uint8

const (
	numOK numResult = iota
	numNotIntegral
	numOverflow
)

var pow10u = [...]uint64{1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
	1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19}

// scaledInt returns the number times 10^scale as an int64, exactly. Digits
// below the units are an error unless truncate is set, in which case the
// result is floored.
func (d *Decoder) scaledInt(n number, scale int, truncate bool) (int64, numResult) {
	data := d.data
	intLen := n.intEnd - n.intStart
	fracLen := n.fracEnd - n.fracStart
	if fracLen == 0 && n.exp == 0 && intLen <= 18 && scale <= 0 {
		var v int64
		for _, c := range data[n.intStart:n.intEnd] {
			v = v*10 + int64(c-'0')
		}
		if n.neg {
			v = -v
		}
		return v, numOK
	}
	// The value is D × 10^e for the digit string D = int ++ frac.
	total := intLen + fracLen
	dig := func(k int) byte {
		if k < intLen {
			return data[n.intStart+k]
		}
		return data[n.fracStart+k-intLen]
	}
	lead := 0
	for lead < total && dig(lead) == '0' {
		lead++
	}
	if lead == total {
		return 0, numOK
	}
	trail := total - 1
	for dig(trail) == '0' {
		trail--
	}
	e := n.exp - fracLen + scale + (total - 1 - trail)
	nd := trail - lead + 1
	var u uint64
	dropped := false
	if e >= 0 {
		if nd+e > 19 {
			return 0, numOverflow
		}
		for k := lead; k <= trail; k++ {
			u = u*10 + uint64(dig(k)-'0')
		}
		hi, lo := mul64(u, pow10u[e])
		if hi != 0 {
			return 0, numOverflow
		}
		u = lo
	} else {
		keep := nd + e // digits left of the decimal point
		dropped = true // the last digit is non-zero and below the units
		if !truncate {
			return 0, numNotIntegral
		}
		if keep > 19 {
			return 0, numOverflow
		}
		for k := lead; k < lead+keep; k++ {
			u = u*10 + uint64(dig(k)-'0')
		}
	}
	if n.neg {
		if dropped {
			u++ // floor
		}
		if u > 1<<63 {
			return 0, numOverflow
		}
		return int64(-u), numOK
	}
	if u > math.MaxInt64 {
		return 0, numOverflow
	}
	return int64(u), numOK
}

func mul64(a, b uint64) (hi, lo uint64) {
	if a == 0 || b == 0 {
		return 0, 0
	}
	lo = a * b
	if lo/b != a {
		return 1, lo
	}
	return 0, lo
}

var pow10f = [...]float64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
	1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// float converts a scanned number; false means it overflows float64.
func (d *Decoder) float(n number) (float64, bool) {
	intLen := n.intEnd - n.intStart
	fracLen := n.fracEnd - n.fracStart
	// Clinger's fast path: a mantissa below 2^53 divided by an exact power of
	// ten is correctly rounded, which is what strconv would return too.
	if n.exp == 0 && intLen+fracLen <= 15 {
		var m int64
		for _, c := range d.data[n.intStart:n.intEnd] {
			m = m*10 + int64(c-'0')
		}
		for _, c := range d.data[n.fracStart:n.fracEnd] {
			m = m*10 + int64(c-'0')
		}
		f := float64(m) / pow10f[fracLen]
		if n.neg {
			f = -f
		}
		return f, true
	}
	s := d.data[n.start:n.end]
	f, err := strconv.ParseFloat(unsafe.String(unsafe.SliceData(s), len(s)), 64)
	if err != nil && (math.IsInf(f, 0) || math.IsNaN(f)) {
		return 0, false
	}
	return f, true
}
