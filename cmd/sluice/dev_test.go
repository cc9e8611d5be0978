package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/inspect"
	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
)

// The README's promise: within 30 seconds of starting `sluice dev`,
// committed Parquet objects exist under the data dir and `sluice inspect`
// reads them; with SLUICE_LONG, summaries too within about two minutes.
func TestDevCommitsWithin30Seconds(t *testing.T) {
	bin := testkit.SluiceBinary(t)
	dir := t.TempDir()
	cs := testkit.NewProcs(t, dir)
	dataDir := filepath.Join(dir, "sluice-data")
	dev, _, err := cs.Start("dev", bin, false, "dev", "--data-dir", dataDir,
		"--kafka-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--rate", "500")
	if err != nil {
		t.Fatal(err)
	}
	lakeDir := filepath.Join(dataDir, "lake")
	started := time.Now()
	var committed int64
	for time.Since(started) < 30*time.Second && committed == 0 {
		time.Sleep(250 * time.Millisecond)
		if !dev.Alive() {
			cs.PrintTails(40)
			t.Fatal("sluice dev exited")
		}
		b, err := objstore.NewLocal(lakeDir)
		if err != nil {
			continue // not created yet
		}
		recs, err := lake.NewCommitLog(b).Records(context.Background(), "events")
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			committed += r.Records
		}
	}
	if committed == 0 {
		cs.PrintTails(40)
		t.Fatalf("no committed records under %s after 30s", lakeDir)
	}
	t.Logf("first commit after %s (%d records)", time.Since(started).Round(100*time.Millisecond), committed)

	out, err := exec.Command(bin, "inspect", filepath.Join(lakeDir, "events")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "TIMESTAMP(isAdjustedToUTC=true,unit=MICROS)") || !strings.Contains(string(out), "rows") {
		t.Fatalf("inspect: %v\n%s", err, out)
	}
	checkDevDashboard(t, dev.LogPath)

	// A file moved into the inbox directory is ingested by the batch source.
	drop := filepath.Join(dataDir, "inbox", "events")
	// Dated now, inside the minutes dev summarises: the long run checks
	// below that no summary is of a minute before dev started.
	ts := time.Now().UTC().Format(time.RFC3339)
	body := strings.Repeat(`{"ts":"`+ts+`","event_id":"e","user_id":"u_1","event_type":"page_view","country":"DE","device":"mobile","amount":1.5,"latency_ms":7,"ok":true}`+"\n", 3) + "not json\n"
	if err := os.WriteFile(filepath.Join(drop, ".drop.jsonl"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(drop, ".drop.jsonl"), filepath.Join(drop, "drop.jsonl")); err != nil {
		t.Fatal(err)
	}
	var fromInbox, deadFromInbox int64
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && fromInbox+deadFromInbox < 4; {
		time.Sleep(250 * time.Millisecond)
		b, _ := objstore.NewLocal(lakeDir)
		recs, err := lake.NewCommitLog(b).Records(context.Background(), "events")
		if err != nil {
			t.Fatal(err)
		}
		fromInbox, deadFromInbox = 0, 0
		for _, r := range recs {
			if r.Source == "inbox:events" {
				fromInbox += r.Records
				deadFromInbox += r.DeadLetters
			}
		}
	}
	if fromInbox != 3 || deadFromInbox != 1 {
		cs.PrintTails(40)
		t.Fatalf("the dropped file: %d records and %d dead letters committed, want 3 and 1", fromInbox, deadFromInbox)
	}

	if os.Getenv("SLUICE_LONG") != "" {
		summaries := filepath.Join(dataDir, "summaries", "events", "1m")
		deadline := time.Now().Add(150 * time.Second)
		var found []string
		for time.Now().Before(deadline) && len(found) == 0 {
			time.Sleep(time.Second)
			found, _ = filepath.Glob(filepath.Join(summaries, "dt=*", "hour=*.parquet"))
		}
		if len(found) == 0 {
			cs.PrintTails(40)
			t.Fatalf("no 1m summaries under %s within %s of starting", summaries, time.Since(started).Round(time.Second))
		}
		t.Logf("first summary after %s", time.Since(started).Round(time.Second))
		out, err := exec.Command(bin, "inspect", summaries).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "window_start") {
			t.Fatalf("inspect summaries: %v\n%s", err, out)
		}
		// The README's promise: the first summary is of the minute dev
		// started in, not of an earlier one holding only late events.
		out, err = exec.Command(bin, "inspect", "--summary", "--format", "json", "-n", "0", summaries).Output()
		if err != nil {
			t.Fatalf("inspect --summary: %v", err)
		}
		var sum inspect.SummaryReport
		if err := json.Unmarshal(out, &sum); err != nil || sum.EventTime == nil || sum.EventTime.Column != "window_start" {
			t.Fatalf("inspect --summary: %v\n%s", err, out)
		}
		if first := started.Truncate(time.Minute); sum.EventTime.Min.Before(first) {
			t.Errorf("first summary window starts %s, before the minute dev started in (%s)", sum.EventTime.Min, first)
		}
	}

	code, err := dev.Stop(syscall.SIGINT, 60*time.Second)
	if err != nil || code != 0 {
		cs.PrintTails(40)
		t.Fatalf("sluice dev did not stop cleanly on Ctrl-C: exit %d, %v", code, err)
	}
}
