package query

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	// Zones must resolve in images without a zoneinfo database (static
	// builds, distroless): the binary carries its own (~450 KB).
	_ "time/tzdata"
)

// Request is one query, as parsed from GET parameters or a POST body.
type Request struct {
	Table    string
	Window   time.Duration // bucket size; a multiple of 24h is a run of local days
	From, To time.Time     // buckets that start in [From, To)
	Zone     *time.Location
	GroupBy  []string
	Filters  map[string][]string // dimension -> accepted values ("null" for NULL)
	Measures []string            // measure names; empty: all
	OrderBy  string              // an output column; empty: bucket start then groups
	Desc     bool
	Limit    int  // with GroupBy: top-N groups per bucket; without: rows in all
	Fill     bool // zero-fill buckets (and groups) without data
}

// Limits of one request.
const (
	maxBuckets   = 100_000
	maxListItems = 64
	maxValueLen  = 256
)

// ErrBadRequest is wrapped by every error about the request itself (400).
var ErrBadRequest = errors.New("bad query")

func badf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadRequest, fmt.Sprintf(format, args...))
}

// jsonRequest is the POST body; the GET parameters have the same names.
type jsonRequest struct {
	Table    string              `json:"table"`
	Window   string              `json:"window"`
	From     string              `json:"from"`
	To       string              `json:"to"`
	TZ       string              `json:"tz"`
	GroupBy  []string            `json:"group_by"`
	Filters  map[string][]string `json:"filters"`
	Measures []string            `json:"measures"`
	OrderBy  string              `json:"order_by"`
	Order    string              `json:"order"`
	Limit    int                 `json:"limit"`
	Fill     string              `json:"fill"`
}

// ParseValues reads a GET query: table, window (1m, 1h, 1d, 15m, ...),
// from and to (RFC 3339, or a date read in tz), tz (IANA name, UTC by
// default), group_by (comma-separated), filter (repeatable dim:v1|v2),
// measures (comma-separated), order_by, order (asc|desc), limit, fill
// (zero|none).
func ParseValues(v url.Values) (Request, error) {
	for k := range v {
		switch k {
		case "table", "window", "from", "to", "tz", "group_by", "filter", "measures", "order_by", "order", "limit", "fill", "token", "format":
		default:
			return Request{}, badf("unknown parameter %q", k)
		}
	}
	jr := jsonRequest{
		Table: v.Get("table"), Window: v.Get("window"), From: v.Get("from"), To: v.Get("to"), TZ: v.Get("tz"),
		OrderBy: v.Get("order_by"), Order: v.Get("order"), Fill: v.Get("fill"),
		GroupBy: splitList(v.Get("group_by")), Measures: splitList(v.Get("measures")),
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			return Request{}, badf("limit %q is not a number", s)
		}
		jr.Limit = n
	}
	for _, f := range v["filter"] {
		dim, vals, ok := strings.Cut(f, ":")
		if !ok || dim == "" {
			return Request{}, badf("filter %q: want dimension:value or dimension:v1|v2", f)
		}
		if jr.Filters == nil {
			jr.Filters = map[string][]string{}
		}
		jr.Filters[dim] = append(jr.Filters[dim], strings.Split(vals, "|")...)
	}
	return jr.resolve()
}

// ParseJSON reads a POST body with the fields of ParseValues (group_by and
// measures as arrays, filters as an object of arrays).
func ParseJSON(body []byte) (Request, error) {
	var jr jsonRequest
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&jr); err != nil {
		return Request{}, badf("body: %v", err)
	}
	if dec.More() {
		return Request{}, badf("body: data after the JSON object")
	}
	return jr.resolve()
}

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func (jr jsonRequest) resolve() (Request, error) {
	r := Request{Table: jr.Table, GroupBy: jr.GroupBy, Measures: jr.Measures, OrderBy: jr.OrderBy, Limit: jr.Limit}
	if r.Table == "" {
		return r, badf("table is required")
	}
	if jr.Window == "" {
		return r, badf("window is required (e.g. 1m, 1h, 1d)")
	}
	w, err := ParseWindow(jr.Window)
	if err != nil {
		return r, err
	}
	r.Window = w
	tz := jr.TZ
	if tz == "" {
		tz = "UTC"
	}
	if len(tz) > 64 || strings.Contains(tz, "..") {
		return r, badf("tz %q is not an IANA time zone", tz)
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return r, badf("tz %q is not an IANA time zone", tz)
	}
	r.Zone = loc
	if r.From, err = parseTime("from", jr.From, loc); err != nil {
		return r, err
	}
	if r.To, err = parseTime("to", jr.To, loc); err != nil {
		return r, err
	}
	if !r.From.Before(r.To) {
		return r, badf("from must be before to")
	}
	switch jr.Order {
	case "", "asc":
	case "desc":
		r.Desc = true
	default:
		return r, badf("order must be asc or desc")
	}
	switch jr.Fill {
	case "", "none":
	case "zero":
		r.Fill = true
	default:
		return r, badf("fill must be zero or none")
	}
	if r.Limit < 0 {
		return r, badf("limit must not be negative")
	}
	if len(r.GroupBy) > maxListItems || len(r.Measures) > maxListItems || len(jr.Filters) > maxListItems {
		return r, badf("too many items in group_by, measures or filters")
	}
	r.Filters = map[string][]string{}
	for dim, vals := range jr.Filters {
		if len(vals) == 0 || len(vals) > maxListItems {
			return r, badf("filter on %s needs 1 to %d values", dim, maxListItems)
		}
		for _, v := range vals {
			if len(v) > maxValueLen {
				return r, badf("filter value on %s is longer than %d bytes", dim, maxValueLen)
			}
		}
		r.Filters[dim] = slices.Clone(vals)
	}
	return r, nil
}

// ParseWindow reads a window size: Go duration syntax (1m, 90s, 1h) or
// days (1d).
func ParseWindow(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		d, err := strconv.Atoi(n)
		if err != nil || d <= 0 || d > 366 {
			return 0, badf("window %q: want a number of days from 1 to 366", s)
		}
		return time.Duration(d) * 24 * time.Hour, nil
	}
	w, err := time.ParseDuration(s)
	if err != nil || w <= 0 {
		return 0, badf("window %q: want a positive duration such as 1m, 1h or 1d", s)
	}
	return w, nil
}

// parseTime reads RFC 3339, or a date (YYYY-MM-DD) or a local date-time
// without offset, which are read in loc.
func parseTime(what, s string, loc *time.Location) (time.Time, error) {
	if s == "" {
		return time.Time{}, badf("%s is required", what)
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{time.DateOnly, "2006-01-02T15:04", "2006-01-02T15:04:05"} {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t, nil
		}
	}
	return time.Time{}, badf("%s %q: want RFC 3339 or YYYY-MM-DD", what, s)
}
