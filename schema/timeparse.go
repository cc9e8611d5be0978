package schema

import (
	"time"
	"unsafe"
)

// parseRFC3339Micros parses an RFC 3339 timestamp ("2006-01-02T15:04:05Z",
// optional fractional seconds of any length, "Z" or a ±hh:mm offset) into
// microseconds since the Unix epoch. It accepts exactly what the standard
// library's RFC 3339 fast path accepts (seconds 0-59, days checked against the
// month, upper-case T and Z) but does not build a time.Time, which makes it
// several times faster. Digits past microseconds are truncated.
func parseRFC3339Micros(s []byte) (int64, bool) {
	if len(s) < len("2006-01-02T15:04:05Z") {
		return 0, false
	}
	ok := true
	num := func(b []byte, lo, hi int) int {
		x := 0
		for _, c := range b {
			if c < '0' || c > '9' {
				ok = false
				return lo
			}
			x = x*10 + int(c-'0')
		}
		if x < lo || x > hi {
			ok = false
			return lo
		}
		return x
	}
	year := num(s[0:4], 0, 9999)
	month := num(s[5:7], 1, 12)
	day := num(s[8:10], 1, 31)
	hour := num(s[11:13], 0, 23)
	minute := num(s[14:16], 0, 59)
	sec := num(s[17:19], 0, 59)
	if !ok || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' {
		return 0, false
	}
	if day > daysIn(month, year) {
		return 0, false
	}
	s = s[19:]
	var micros int64
	if len(s) >= 2 && s[0] == '.' && isDigit(s[1]) {
		n := 1
		scale := int64(100000)
		for ; n < len(s) && isDigit(s[n]); n++ {
			if scale > 0 {
				micros += int64(s[n]-'0') * scale
				scale /= 10
			}
		}
		s = s[n:]
	}
	offset := 0
	switch {
	case len(s) == 1 && s[0] == 'Z':
	case len(s) == 6 && (s[0] == '+' || s[0] == '-') && s[3] == ':':
		hh := num(s[1:3], 0, 23)
		mm := num(s[4:6], 0, 59)
		if !ok {
			return 0, false
		}
		offset = (hh*60 + mm) * 60
		if s[0] == '-' {
			offset = -offset
		}
	default:
		return 0, false
	}
	secs := daysFromCivil(year, month, day)*86400 + int64(hour*3600+minute*60+sec) - int64(offset)
	return secs*1_000_000 + micros, true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isLeap(y int) bool { return y%4 == 0 && (y%100 != 0 || y%400 == 0) }

func daysIn(month, year int) int {
	switch month {
	case 2:
		if isLeap(year) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// daysFromCivil returns the days since 1970-01-01 of a proleptic Gregorian
// date (Howard Hinnant's algorithm).
func daysFromCivil(y, m, d int) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 && y%400 != 0 {
		era--
	}
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return int64(era)*146097 + int64(doe) - 719468
}

// parseLayoutMicros parses s with a Go time layout; values without a zone are UTC.
func parseLayoutMicros(layout string, s []byte) (int64, bool) {
	// The string only lives for the call; time.Parse does not retain it on
	// success and the error, which would, is dropped.
	t, err := time.Parse(layout, unsafe.String(unsafe.SliceData(s), len(s)))
	if err != nil {
		return 0, false
	}
	return t.UnixMicro(), true
}
