package ops

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// PrintingReceiver is a webhook endpoint for trying rules out (`sluice
// dev` runs one): it checks each delivery's signature with secret and
// prints one line per delivery to w, marking repeats of an id it has seen.
type PrintingReceiver struct {
	secret string
	w      io.Writer

	mu   sync.Mutex
	seen map[string]int
}

// NewPrintingReceiver returns a receiver that verifies with secret.
func NewPrintingReceiver(w io.Writer, secret string) *PrintingReceiver {
	return &PrintingReceiver{secret: expandEnv(secret), w: w, seen: map[string]int{}}
}

func (p *PrintingReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if err := Verify(p.secret, r.Header, body, time.Now(), 5*time.Minute); err != nil {
		p.mu.Lock()
		fmt.Fprintf(p.w, "webhook REFUSED %s: %v\n", r.Header.Get(HeaderID), err)
		p.mu.Unlock()
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var msg struct {
		Type string `json:"type"`
		Data struct {
			Rule   string          `json:"rule"`
			State  string          `json:"state"`
			Group  json.RawMessage `json:"group"`
			Start  *time.Time      `json:"window_start"`
			Pos    string          `json:"position"`
			Values json.RawMessage `json:"values"`
		} `json:"data"`
	}
	_ = json.Unmarshal(body, &msg)
	id := r.Header.Get(HeaderID)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seen[id]++
	where := msg.Data.Pos
	if msg.Data.Start != nil {
		where = msg.Data.Start.UTC().Format(time.RFC3339)
		if len(msg.Data.Group) > 0 && string(msg.Data.Group) != "null" {
			where += " " + string(msg.Data.Group)
		}
	}
	repeat := ""
	if n := p.seen[id]; n > 1 {
		repeat = fmt.Sprintf(" (repeat #%d of this id)", n)
	}
	fmt.Fprintf(p.w, "webhook %s %s %s at %s%s: %s\n", id, msg.Data.Rule, msg.Data.State, where, repeat, msg.Data.Values)
	w.WriteHeader(http.StatusNoContent)
}
