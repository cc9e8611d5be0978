package main

import (
	"bytes"
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/twmb/franz-go/pkg/kgo"
)

// startBrokerProc starts `sluice broker` as procs' child name and returns
// it with the address it printed.
func startBrokerProc(t *testing.T, procs *testkit.Procs, name, bin string, args ...string) (*testkit.Proc, string) {
	t.Helper()
	p, addr, err := procs.Start(name, bin, true, append([]string{"broker", "--addr", "127.0.0.1:0", "--log-level", "warn"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	return p, addr
}

// stopBrokerProc sends sig and returns the exit code (-1: signalled).
func stopBrokerProc(t *testing.T, p *testkit.Proc, sig syscall.Signal) int {
	t.Helper()
	code, err := p.Stop(sig, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return code
}

func TestBrokerBinarySurvivesKill9(t *testing.T) {
	bin := testkit.SluiceBinary(t)
	tests := []struct {
		name string
		args []string
	}{
		// A kill -9 leaves the OS page cache intact, so acknowledged records
		// survive it without fsync; --sync is for machine crashes.
		{name: "without sync", args: nil},
		{name: "with sync", args: []string{"--sync"}},
	}
	const n = 3000
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			args := append([]string{"--data-dir", dir, "--topic", "events:4"}, tc.args...)
			procs := testkit.NewProcs(t, t.TempDir())

			p1, addr1 := startBrokerProc(t, procs, "broker-1", bin, args...)
			cl := newTestClient(t, addr1)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			rs := make([]*kgo.Record, 0, n)
			for i := range n {
				rs = append(rs, &kgo.Record{Topic: "events", Key: fmt.Appendf(nil, "u%d", i%37), Value: fmt.Appendf(nil, "v%d", i)})
			}
			if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
				t.Fatalf("produce: %v", err)
			}
			cl.Close()
			if code := stopBrokerProc(t, p1, syscall.SIGKILL); code != -1 {
				t.Fatalf("killed broker exit code %d, want -1 (signalled)", code)
			}

			p2, addr2 := startBrokerProc(t, procs, "broker-2", bin, args...)
			got := consumeValues(t, addr2, "events", n)
			for i := range n {
				if c := got[fmt.Sprintf("v%d", i)]; c != 1 {
					t.Fatalf("record v%d seen %d times after kill -9 and restart, want 1", i, c)
				}
			}
			if code := stopBrokerProc(t, p2, syscall.SIGTERM); code != 0 {
				t.Fatalf("SIGTERM exit code %d, want 0; stderr:\n%s", code, p2.Tail(40))
			}
		})
	}
}

func TestBrokerBinaryUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{name: "bad partitions", args: []string{"broker", "--topic", "events:x"}},
		{name: "zero partitions", args: []string{"broker", "--topic", "events:0"}},
		{name: "bad topic name", args: []string{"broker", "--topic", "a b:3"}},
		{name: "non-loopback addr", args: []string{"broker", "--addr", "0.0.0.0:9092"}},
		{name: "sync without data dir", args: []string{"broker", "--sync"}},
		{name: "positional argument", args: []string{"broker", "extra"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if code := run(ctx, tc.args, &stdout, &stderr); code != exitUsage {
				t.Fatalf("exit code %d, want %d; stderr:\n%s", code, exitUsage, stderr.String())
			}
		})
	}
}

func TestParseTopicFlags(t *testing.T) {
	tests := []struct {
		name    string
		in      []string
		want    map[string]int32
		wantErr bool
	}{
		{name: "none", in: nil, want: map[string]int32{}},
		{name: "with and without count", in: []string{"events:8", "dlq"}, want: map[string]int32{"events": 8, "dlq": 0}},
		{name: "duplicate", in: []string{"a:1", "a:2"}, wantErr: true},
		{name: "empty name", in: []string{":3"}, wantErr: true},
		{name: "negative", in: []string{"a:-1"}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseTopicFlags(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("error %v, want error: %v", err, tc.wantErr)
			}
			if tc.wantErr {
				return
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Fatalf("got %v, want %v", got, tc.want)
				}
			}
		})
	}
}

func newTestClient(t *testing.T, addr string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(addr),
		kgo.RequiredAcks(kgo.AllISRAcks()),
	}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// consumeValues reads want records of topic from the start and counts values.
func consumeValues(t *testing.T, addr, topic string, want int) map[string]int {
	t.Helper()
	cl := newTestClient(t, addr, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(200*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	got := make(map[string]int, want)
	n := 0
	for n < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records before the deadline", n, want)
		}
		fs.EachError(func(tp string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", tp, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			got[string(r.Value)]++
			n++
		})
	}
	return got
}
