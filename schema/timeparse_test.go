package schema

import (
	"testing"
	"time"
)

// TestParseRFC3339AgainstTimePackage: the hand-written RFC 3339 parser
// agrees with the time package on the calendar (century leap years, year
// 0, the last instant of 9999), on offsets, and on what it refuses,
// including a fraction that runs to the end of the text with no zone.
func TestParseRFC3339AgainstTimePackage(t *testing.T) {
	for _, s := range []string{
		"2026-11-26T10:15:30Z", "2026-11-26T10:15:30.123456789Z", "2026-11-26T11:15:30.5+01:00", "2026-11-26T10:15:30-23:59",
		"2024-02-29T00:00:00Z", "2023-02-29T00:00:00Z", "2000-02-29T12:00:00Z", "2100-02-29T00:00:00Z", "1900-02-29T00:00:00Z",
		"1900-02-28T23:59:59Z", "1970-01-01T00:00:00Z", "1969-12-31T23:59:59.999999Z",
		"0000-01-01T00:00:00Z", "0000-02-29T00:00:00Z", "0001-03-01T00:00:00Z", "0400-02-29T00:00:00Z", "9999-12-31T23:59:59.999999Z",
		"2026-04-31T00:00:00Z", "2026-11-26T10:15:30.123", "2026-11-26T10:15:30.", "2026-11-26T10:15:30.Z", "2026-11-26T24:00:00Z",
		"2026-11-26T10:15:30+0100", "2026-11-26t10:15:30Z",
	} {
		got, ok := parseRFC3339Micros([]byte(s))
		want, err := time.Parse(time.RFC3339Nano, s)
		if ok != (err == nil) {
			t.Errorf("%q: parsed %v, the time package %v", s, ok, err)
			continue
		}
		if ok && got != want.UnixMicro() {
			t.Errorf("%q = %d µs, the time package %d", s, got, want.UnixMicro())
		}
	}
	// Offsets past 23:59, which time.Parse's lenient fallback accepts but
	// RFC 3339 (and its strict fast path) does not.
	for _, s := range []string{"2026-11-26T10:15:30+24:00", "2026-11-26T10:15:30+01:60"} {
		if us, ok := parseRFC3339Micros([]byte(s)); ok {
			t.Errorf("%q accepted as %d µs", s, us)
		}
	}
}
