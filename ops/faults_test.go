package ops

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/schema"
)

// The crash test runs the evaluator and the receiver as child processes of
// the test binary (re-executed with SLUICE_OPS_CHILD set), so that they
// can be SIGKILLed at any instruction.
func TestMain(m *testing.M) {
	switch os.Getenv("SLUICE_OPS_CHILD") {
	case "evaluator":
		os.Exit(runEvaluatorChild())
	case "receiver":
		os.Exit(runReceiverChild())
	}
	os.Exit(m.Run())
}

func runEvaluatorChild() int {
	lakeDir, rulesFile := os.Getenv("SLUICE_OPS_LAKE"), os.Getenv("SLUICE_OPS_RULES")
	b, err := objstore.NewLocal(lakeDir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	rs, err := LoadRules(rulesFile, schema.SampleTables(), nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	svc, err := NewService(Config{Interval: 100 * time.Millisecond, Lease: time.Second, Start: StartBeginning, Rescan: 500 * time.Millisecond},
		rs, schema.SampleTables(), b, nil, fmt.Sprint("child-", os.Getpid()), slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})), nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	_ = svc.Run(context.Background())
	return 0
}

// runReceiverChild appends "<webhook-id> <position>" of every delivery
// whose signature verifies to a file, synced, before answering 204.
func runReceiverChild() int {
	out, err := os.OpenFile(os.Getenv("SLUICE_OPS_SEEN"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	var mu sync.Mutex
	ln, err := net.Listen("tcp", os.Getenv("SLUICE_OPS_ADDR"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	_ = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := Verify(secretOld, r.Header, body, time.Now(), 5*time.Minute); err != nil {
			w.WriteHeader(400)
			return
		}
		var p struct{ Data struct{ Position string } }
		_ = json.Unmarshal(body, &p)
		mu.Lock()
		fmt.Fprintf(out, "%s %s\n", r.Header.Get(HeaderID), p.Data.Position)
		err := out.Sync()
		mu.Unlock()
		if err != nil {
			w.WriteHeader(500)
			return
		}
		w.WriteHeader(204)
	}))
	return 0
}

type child struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func startChild(t *testing.T, kind string, env ...string) *child {
	t.Helper()
	cmd := testkit.TestBinaryCmd(context.Background(), append([]string{"SLUICE_OPS_CHILD=" + kind}, env...)...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(c.done) }()
	t.Cleanup(func() { c.kill() })
	return c
}

func (c *child) kill() {
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.done
}

// Done-when 1: matching records flow while the evaluator and the receiver
// are SIGKILLed at random. Every matching record (the producer's list)
// gets exactly one log entry, every delivery the receiver saw carries the
// id of one of them, and every entry reached the receiver.
func TestOpsCrashEventRules(t *testing.T) {
	t.Parallel()
	kills, batches, batch := 4, 8, 40
	if os.Getenv("SLUICE_FAULTS") != "" {
		kills, batches, batch = 12, 30, 200
	} else if testing.Short() {
		t.Skip("crash test: several seconds")
	}
	dir := t.TempDir()
	lakeDir := filepath.Join(dir, "lake")
	if err := os.MkdirAll(lakeDir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := objstore.NewLocal(lakeDir)
	if err != nil {
		t.Fatal(err)
	}
	addr := testkit.FreeAddr(t)
	rulesFile := filepath.Join(dir, "rules.yaml")
	rules := fmt.Sprintf(`
webhooks:
  - name: hook
    url: http://%s/hook
    secrets: [%q]
    timeout: 2s
    retry: {attempts: 20, span: 2m}
rules:
  - name: big
    table: events
    when: amount > 50
    action: {webhook: hook}
`, addr, secretOld)
	if err := os.WriteFile(rulesFile, []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	seenFile := filepath.Join(dir, "seen.txt")
	evalEnv := []string{"SLUICE_OPS_LAKE=" + lakeDir, "SLUICE_OPS_RULES=" + rulesFile}
	rcvEnv := []string{"SLUICE_OPS_ADDR=" + addr, "SLUICE_OPS_SEEN=" + seenFile}
	eval := startChild(t, "evaluator", evalEnv...)
	rcv := startChild(t, "receiver", rcvEnv...)

	f := newFeeder(t, b, 3)
	rng := rand.New(rand.NewPCG(11, 13))
	now := time.Now()
	killed := 0
	for i := 0; i < batches || killed < kills; i++ {
		f.random(batch/2+rng.IntN(batch), now.Add(-time.Hour), now)
		f.Commit()
		time.Sleep(time.Duration(100+rng.IntN(300)) * time.Millisecond)
		if i%2 == 1 && killed < kills {
			if rng.IntN(2) == 0 {
				eval.kill()
				eval = startChild(t, "evaluator", evalEnv...)
			} else {
				rcv.kill()
				time.Sleep(time.Duration(rng.IntN(500)) * time.Millisecond) // deliveries fail meanwhile
				rcv = startChild(t, "receiver", rcvEnv...)
			}
			killed++
		}
	}
	log := NewActionLog(b)
	ctx := context.Background()
	var entries []*Entry
	var seen map[string][]string
	deadline := time.Now().Add(90 * time.Second)
	for {
		entries, err = log.List(ctx, Filter{Table: "events", Rule: "big"})
		if err != nil {
			t.Fatal(err)
		}
		seen = readSeen(t, seenFile)
		if (len(entries) == len(f.big) && len(seen) >= len(entries)) || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	eval.kill()
	rcv.kill()

	// Exactly one entry per matching record, none for others.
	byPos := map[string]string{}
	ids := map[string]string{}
	for _, e := range entries {
		if byPos[e.Position] != "" {
			t.Fatalf("record %s logged twice (%s, %s)", e.Position, byPos[e.Position], e.ID)
		}
		byPos[e.Position] = e.ID
		ids[e.ID] = e.Position
		if !f.big[e.Position] {
			t.Fatalf("entry %s for %s, which does not match", e.ID, e.Position)
		}
		if e.Status == StatusDead {
			t.Fatalf("entry %s dead-lettered: %s", e.ID, e.LastError)
		}
	}
	for p := range f.big {
		if byPos[p] == "" {
			t.Fatalf("matching record %s missed: no log entry (%d of %d logged)", p, len(byPos), len(f.big))
		}
	}
	// Every delivery seen carries a logged id, with its record; every
	// entry was seen.
	dups := 0
	for id, poss := range seen {
		if ids[id] == "" {
			t.Fatalf("receiver saw id %s, which is not in the log", id)
		}
		for _, p := range poss {
			if p != ids[id] {
				t.Fatalf("delivery %s carries position %s, its entry %s", id, p, ids[id])
			}
		}
		dups += len(poss) - 1
	}
	for id := range ids {
		if len(seen[id]) == 0 {
			t.Fatalf("entry %s (%s) never reached the receiver", id, ids[id])
		}
	}
	t.Logf("%d kills, %d matching records, %d entries, %d deliveries seen (%d repeated under the same id)",
		killed, len(f.big), len(entries), len(seen)+dups, dups)
}

func readSeen(t *testing.T, path string) map[string][]string {
	out := map[string][]string{}
	fh, err := os.Open(path)
	if os.IsNotExist(err) {
		return out
	}
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		id, pos, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue // a line cut by a SIGKILL
		}
		out[id] = append(out[id], pos)
	}
	return out
}
