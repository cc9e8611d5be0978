package httpin_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/ingest/httpin"
	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/schema"
)

// childEnv, when set to a directory, makes the test binary a server over a
// local bucket there (see TestMain): the fault test kills it with SIGKILL.
const childEnv = "SLUICE_HTTPIN_CHILD_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(childEnv); dir != "" {
		os.Exit(runChild(dir))
	}
	os.Exit(m.Run())
}

func runChild(dir string) int {
	b, err := objstore.NewLocal(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	y := strings.Replace(string(schema.SampleYAML), "topic: events", "http: {}", 1)
	tables, err := schema.Parse([]byte(y), "events.yaml")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	url, _, err := runStack(b, httpin.Config{WaitTimeout: 5 * time.Second}, tables[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("URL=%s\n", url)
	select {} // until killed
}

// startChild runs the server in a child process and returns its URL.
func startChild(t *testing.T, dir string) (*exec.Cmd, string) {
	t.Helper()
	cmd := testkit.TestBinaryCmd(context.Background(), childEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "URL=") {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("child server did not start: %q %v", line, err)
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	return cmd, strings.TrimSpace(strings.TrimPrefix(line, "URL="))
}

// The server is killed with SIGKILL three times while four clients post.
// Requests with an Idempotency-Key are retried until they get a 200; those
// without are sent once. The verifier reads the lake: every record of a
// 200 is there exactly once, a record of a failed request without a key at
// most once, and nothing else.
func TestFaultsHTTPIngestSIGKILL(t *testing.T) {
	if os.Getenv("SLUICE_FAULTS") != "1" {
		t.Skip("fault scenario: set SLUICE_FAULTS=1")
	}
	dir := t.TempDir()
	cmd, url := startChild(t, dir)
	var cur atomic.Value
	cur.Store(url)
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()

	var (
		mu       sync.Mutex
		acked    = map[string]bool{} // ids of records in a 200
		maybe    = map[string]bool{} // ids of records in a failed request without a key
		stop     atomic.Bool
		wg       sync.WaitGroup
		requests atomic.Int64
		retried  atomic.Int64 // requests with a key that needed more than one attempt
	)
	ts := time.Now().Add(-time.Minute)
	// Clients give up early (a timeout that grows with each attempt), so
	// many answers are lost after the records were committed: the retries
	// must not commit them again.
	send := func(body []byte, key string, attempt int) (int, error) {
		client := &http.Client{Timeout: time.Duration(100*(attempt+1)) * time.Millisecond}
		req, _ := http.NewRequest(http.MethodPost, cur.Load().(string)+"/v1/tables/events/events", bytes.NewReader(body))
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		res, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.StatusCode, nil
	}
	for c := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; !stop.Load() && n < 10_000; n++ {
				ids := make([]string, 20)
				var body bytes.Buffer
				for i := range ids {
					ids[i] = fmt.Sprintf("c%d-r%d-%d", c, n, i)
					body.WriteString(event(ids[i], ts) + "\n")
				}
				key := ""
				if n%4 != 3 {
					key = fmt.Sprintf("c%d-r%d", c, n)
				}
				requests.Add(1)
				for attempt := 0; ; attempt++ {
					code, err := send(body.Bytes(), key, attempt)
					if err == nil && code == 200 {
						mu.Lock()
						for _, id := range ids {
							acked[id] = true
						}
						mu.Unlock()
						break
					}
					if key == "" || attempt == 100 {
						if key != "" {
							t.Errorf("request %s never got a 200 (last: %d %v)", key, code, err)
						}
						mu.Lock()
						for _, id := range ids {
							maybe[id] = true
						}
						mu.Unlock()
						break
					}
					if attempt == 0 {
						retried.Add(1)
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
		}()
	}
	for range 3 {
		time.Sleep(time.Duration(300+rand.IntN(700)) * time.Millisecond)
		_ = cmd.Process.Kill() // SIGKILL
		_ = cmd.Wait()
		cmd, url = startChild(t, dir)
		cur.Store(url)
	}
	time.Sleep(500 * time.Millisecond)
	stop.Store(true)
	wg.Wait()

	b, err := objstore.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := committedIDs(t, b)
	var lost, dup, extra int
	for id, n := range got {
		switch {
		case n > 1:
			dup++
		case !acked[id] && !maybe[id]:
			extra++
		}
	}
	for id := range acked {
		if got[id] == 0 {
			lost++
		}
	}
	t.Logf("%d requests (%d retried with their key), %d records acknowledged, %d in failed requests without a key, %d in the lake", requests.Load(), retried.Load(), len(acked), len(maybe), len(got))
	if retried.Load() == 0 {
		t.Error("no request was cut by a kill: the scenario tested nothing")
	}
	if lost+dup+extra > 0 || len(acked) == 0 {
		t.Fatalf("after SIGKILLs: %d acknowledged records lost, %d duplicated, %d never sent", lost, dup, extra)
	}
}
