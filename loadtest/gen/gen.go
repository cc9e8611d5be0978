package gen

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"time"
)

// Defaults applied by New to zero fields of Config.
const (
	DefaultUsers           = 100_000
	DefaultZipfS           = 1.2
	DefaultEventsPerSecond = 1000

	// MaxUsers keeps user ids at 8 digits.
	MaxUsers = 90_000_000
)

// DefaultStart is the event time of the first event when Config.Start and
// Config.Clock are unset. Fixed, so that runs are reproducible.
var DefaultStart = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Config shapes the generated stream.
type Config struct {
	// Seed makes the stream reproducible: equal configs give equal bytes.
	Seed int64
	// Users is the number of distinct user_id values, the key cardinality.
	// Default DefaultUsers.
	Users int
	// ZipfS is the Zipf exponent of user popularity (> 1; larger is more
	// skewed). user_id is the Kafka key, so this also skews partitions.
	// Default DefaultZipfS.
	ZipfS float64
	// Start is the event time of the first event. Default DefaultStart.
	Start time.Time
	// EventsPerSecond is how fast event time advances: event i has time
	// Start + i/EventsPerSecond (before lateness). It is about event time,
	// not about how fast events are produced. Default DefaultEventsPerSecond.
	EventsPerSecond float64
	// Clock, if set, stamps events with Clock() instead (live traffic);
	// Start and EventsPerSecond are then ignored and the stream is no longer
	// reproducible byte for byte.
	Clock func() time.Time
	// LateShare is the fraction of events (0..1) whose event time lies in
	// the past by a uniform amount in (0, LateBy].
	LateShare float64
	// LateBy is how late a late event can be. Needed when LateShare > 0.
	LateBy time.Duration
	// NullShare is the fraction of events (0..1) whose country and,
	// independently, device are null, as when a GeoIP or user-agent lookup
	// fails.
	NullShare float64
}

// Event is the generated event in structured form, for verifiers and tests.
// It holds no pointers into the generator's buffers.
type Event struct {
	Seq       uint64    // 0-based position in the stream
	TS        time.Time // event time, UTC, microsecond precision
	EventID   [16]byte  // printed as 32 lowercase hex digits
	User      uint64    // user_id is "u_" + decimal User; Users distinct values
	EventType string
	Country   string // "" when null
	Device    string // "" when null
	Amount    float64
	LatencyMS int64
	OK        bool
	Late      bool // event time was pushed into the past by LateShare
}

// Generator produces events. It is not safe for concurrent use; run one per
// goroutine with different seeds.
type Generator struct {
	cfg       Config
	rng       *rand.Rand
	zipf      *zipf
	seq       uint64
	startUS   int64
	stepUS    float64
	lateMaxUS int64
	idKey     uint64
	userMul   uint64 // coprime to Users: rank -> user number is a permutation

	// The formatted second of the last event time ("2006-01-02T15:04:05."):
	// most events share it with the one before.
	tsSecond int64
	tsPrefix []byte
}

// userBase makes every user number 8 digits (for Users up to 90 million), so
// user_id has a realistic, constant width.
const userBase = 10_000_000

// New validates cfg, applies defaults and returns a generator.
func New(cfg Config) (*Generator, error) {
	if cfg.Users == 0 {
		cfg.Users = DefaultUsers
	}
	if cfg.ZipfS == 0 {
		cfg.ZipfS = DefaultZipfS
	}
	if cfg.EventsPerSecond == 0 {
		cfg.EventsPerSecond = DefaultEventsPerSecond
	}
	if cfg.Start.IsZero() {
		cfg.Start = DefaultStart
	}
	switch {
	case cfg.Users < 1 || cfg.Users > MaxUsers:
		return nil, fmt.Errorf("users %d: must be in [1, %d]", cfg.Users, MaxUsers)
	case !(cfg.ZipfS > 1) || math.IsInf(cfg.ZipfS, 0):
		return nil, fmt.Errorf("zipf s %v: must be a finite number > 1", cfg.ZipfS)
	case !(cfg.EventsPerSecond > 0) || math.IsInf(cfg.EventsPerSecond, 0):
		return nil, fmt.Errorf("events per second %v: must be a finite number > 0", cfg.EventsPerSecond)
	case !(cfg.LateShare >= 0 && cfg.LateShare <= 1):
		return nil, fmt.Errorf("late share %v: must be in [0, 1]", cfg.LateShare)
	case cfg.LateShare > 0 && cfg.LateBy < time.Microsecond:
		return nil, errors.New("late share > 0 needs late by of at least 1µs")
	case cfg.LateBy < 0:
		return nil, fmt.Errorf("late by %v: must not be negative", cfg.LateBy)
	case !(cfg.NullShare >= 0 && cfg.NullShare <= 1):
		return nil, fmt.Errorf("null share %v: must be in [0, 1]", cfg.NullShare)
	}
	seed := uint64(cfg.Seed)
	rng := rand.New(rand.NewPCG(seed, mix64(seed^0x5eed)))
	g := &Generator{
		cfg:       cfg,
		rng:       rng,
		zipf:      newZipf(rng, cfg.ZipfS, uint64(cfg.Users)),
		startUS:   cfg.Start.UnixMicro(),
		stepUS:    1e6 / cfg.EventsPerSecond,
		lateMaxUS: cfg.LateBy.Microseconds(),
		idKey:     mix64(seed ^ 0x1d),
	}
	g.userMul = coprimeNear(mix64(seed^0x05e7)%uint64(cfg.Users)|1, uint64(cfg.Users))
	return g, nil
}

// Seq is the number of events generated so far.
func (g *Generator) Seq() uint64 { return g.seq }

// eventTypes are weighted like a web shop's traffic: mostly views, few
// purchases. Weights are per mille and sum to 1000.
var eventTypes = []weighted{
	{"page_view", 520},
	{"click", 200},
	{"search", 90},
	{"add_to_cart", 80},
	{"login", 40},
	{"purchase", 35},
	{"signup", 20},
	{"logout", 15},
}

// countries is skewed toward a few large markets. Per mille, sum 1000.
var countries = []weighted{
	{"US", 300}, {"DE", 90}, {"GB", 80}, {"IN", 80}, {"BR", 60}, {"FR", 55},
	{"JP", 50}, {"CA", 40}, {"ES", 35}, {"IT", 35}, {"NL", 25}, {"MX", 25},
	{"AU", 20}, {"PL", 20}, {"SE", 15}, {"KR", 15}, {"TR", 15}, {"ID", 10},
	{"NG", 10}, {"ZA", 10}, {"AR", 5}, {"CH", 5},
}

var devices = []weighted{{"mobile", 600}, {"desktop", 330}, {"tablet", 70}}

// The logarithms of the median latency (ms) and basket (cents), computed
// once: math.Log is not folded at compile time, and it was a tenth of the
// generator's cost.
var (
	logMedianLatency = math.Log(80)
	logMedianCents   = math.Log(4000)
)

type weighted struct {
	name string
	w    uint32 // per mille
}

// pick returns the entry that u (uniform in [0, 1000)) falls into.
func pick(ws []weighted, u uint32) string {
	for _, e := range ws {
		if u < e.w {
			return e.name
		}
		u -= e.w
	}
	return ws[len(ws)-1].name
}

// Next generates the next event. It appends the event's JSON object (no
// trailing newline) to buf and returns it as value; key is the user_id, a
// sub-slice of value (so it must be copied if value's bytes are reused).
// Apart from growing buf, Next does not allocate.
func (g *Generator) Next(buf []byte) (value, key []byte, ev Event) {
	r := g.rng
	ev.Seq = g.seq
	g.seq++

	var us int64
	if g.cfg.Clock != nil {
		us = g.cfg.Clock().UnixMicro()
	} else {
		us = g.startUS + int64(float64(ev.Seq)*g.stepUS)
	}
	if g.cfg.LateShare > 0 && r.Float64() < g.cfg.LateShare {
		us -= 1 + r.Int64N(g.lateMaxUS)
		ev.Late = true
	}
	ev.TS = time.UnixMicro(us).UTC()

	// Unique per seed: mix64 is a bijection, so distinct sequence numbers
	// give distinct first halves.
	hi := mix64(ev.Seq ^ g.idKey)
	lo := mix64(hi + g.idKey)
	putUint64(ev.EventID[:8], hi)
	putUint64(ev.EventID[8:], lo)

	// Popular users are scattered over the id space, not u_0, u_1, ...
	ev.User = userBase + g.zipf.Uint64()*g.userMul%uint64(g.cfg.Users)
	// A user's home country and usual device are properties of the user,
	// not of each event, as they would be in real traffic.
	uh := mix64(ev.User ^ g.idKey)
	ev.Country = pick(countries, uint32(uh%1000))
	ev.Device = pick(devices, uint32((uh>>20)%1000))
	if r.Uint32N(10) == 0 { // one event in ten is from another device
		ev.Device = pick(devices, r.Uint32N(1000))
	}
	if g.cfg.NullShare > 0 {
		if r.Float64() < g.cfg.NullShare {
			ev.Country = ""
		}
		if r.Float64() < g.cfg.NullShare {
			ev.Device = ""
		}
	}
	ev.EventType = pick(eventTypes, r.Uint32N(1000))

	// Log-normal latency: median ~80 ms with a long tail.
	lat := math.Exp(logMedianLatency + 0.8*r.NormFloat64())
	ev.LatencyMS = int64(lat) + 1
	// Slow requests fail more often.
	failPerMille := uint32(15)
	if ev.LatencyMS > 1000 {
		failPerMille = 250
	}
	ev.OK = r.Uint32N(1000) >= failPerMille
	if ev.EventType == "purchase" {
		// Log-normal basket value, median ~$40, in cents.
		cents := int64(math.Exp(logMedianCents+0.9*r.NormFloat64())) + 99
		ev.Amount = float64(cents) / 100
	}

	start := len(buf)
	buf = append(buf, `{"ts":"`...)
	buf = g.appendEventTime(buf, us)
	buf = append(buf, `","event_id":"`...)
	buf = appendHex(buf, ev.EventID[:])
	buf = append(buf, `","user_id":"`...)
	keyStart := len(buf)
	buf = append(buf, "u_"...)
	buf = strconv.AppendUint(buf, ev.User, 10)
	keyEnd := len(buf)
	buf = append(buf, `","event_type":"`...)
	buf = append(buf, ev.EventType...)
	buf = append(buf, `","country":`...)
	buf = appendNullableString(buf, ev.Country)
	buf = append(buf, `,"device":`...)
	buf = appendNullableString(buf, ev.Device)
	buf = append(buf, `,"amount":`...)
	buf = strconv.AppendFloat(buf, ev.Amount, 'f', -1, 64)
	buf = append(buf, `,"latency_ms":`...)
	buf = strconv.AppendInt(buf, ev.LatencyMS, 10)
	buf = append(buf, `,"ok":`...)
	buf = strconv.AppendBool(buf, ev.OK)
	buf = append(buf, '}')
	return buf[start:], buf[keyStart:keyEnd], ev
}

// UserID is the user_id string of ev, as in the JSON and the Kafka key.
func (ev Event) UserID() string { return "u_" + strconv.FormatUint(ev.User, 10) }

// EventIDString is the event_id as in the JSON.
func (ev Event) EventIDString() string { return string(appendHex(nil, ev.EventID[:])) }

func appendNullableString(buf []byte, s string) []byte {
	if s == "" {
		return append(buf, "null"...)
	}
	buf = append(buf, '"')
	buf = append(buf, s...)
	return append(buf, '"')
}

// appendEventTime writes the event time us (µs since the epoch) as
// appendTimestamp does, formatting the date and time of day only when the
// second changes.
func (g *Generator) appendEventTime(buf []byte, us int64) []byte {
	sec, micro := floorDivMod(us, 1_000_000)
	if sec != g.tsSecond || g.tsPrefix == nil {
		t := time.Unix(sec, 0).UTC()
		if y := t.Year(); y < 0 || y > 9999 {
			return appendTimestamp(buf, time.UnixMicro(us).UTC())
		}
		g.tsPrefix = appendTimestamp(g.tsPrefix[:0], t)
		g.tsPrefix = g.tsPrefix[:len(g.tsPrefix)-len("000000Z")]
		g.tsSecond = sec
	}
	buf = append(buf, g.tsPrefix...)
	buf = appendDigits(buf, int(micro), 6)
	return append(buf, 'Z')
}

func floorDivMod(a, b int64) (q, r int64) {
	q, r = a/b, a%b
	if r < 0 {
		q, r = q-1, r+b
	}
	return q, r
}

// appendTimestamp writes t (UTC) as 2006-01-02T15:04:05.000000Z. Hand-rolled
// because time.AppendFormat costs more than the rest of an event.
func appendTimestamp(buf []byte, t time.Time) []byte {
	year, month, day := t.Date()
	hour, min, sec := t.Clock()
	micro := t.Nanosecond() / 1000
	if year < 0 || year > 9999 {
		// Outside RFC 3339; cannot happen with sane configs, but stay valid.
		return t.AppendFormat(buf, "2006-01-02T15:04:05.000000Z07:00")
	}
	buf = appendDigits(buf, year, 4)
	buf = append(buf, '-')
	buf = appendDigits(buf, int(month), 2)
	buf = append(buf, '-')
	buf = appendDigits(buf, day, 2)
	buf = append(buf, 'T')
	buf = appendDigits(buf, hour, 2)
	buf = append(buf, ':')
	buf = appendDigits(buf, min, 2)
	buf = append(buf, ':')
	buf = appendDigits(buf, sec, 2)
	buf = append(buf, '.')
	buf = appendDigits(buf, micro, 6)
	return append(buf, 'Z')
}

func appendDigits(buf []byte, v, width int) []byte {
	var tmp [8]byte
	for i := width - 1; i >= 0; i-- {
		tmp[i] = byte('0' + v%10)
		v /= 10
	}
	return append(buf, tmp[:width]...)
}

const hexDigits = "0123456789abcdef"

func appendHex(buf, b []byte) []byte {
	for _, c := range b {
		buf = append(buf, hexDigits[c>>4], hexDigits[c&0xf])
	}
	return buf
}

func putUint64(b []byte, v uint64) {
	_ = b[7]
	for i := 7; i >= 0; i-- {
		b[i] = byte(v)
		v >>= 8
	}
}

// coprimeNear returns the first k >= start with gcd(k, n) == 1.
func coprimeNear(start, n uint64) uint64 {
	for k := max(start, 1); ; k++ {
		a, b := k, n
		for b != 0 {
			a, b = b, a%b
		}
		if a == 1 {
			return k
		}
	}
}

// mix64 is SplitMix64's finalizer: a bijection on uint64 that scrambles bits.
func mix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}
