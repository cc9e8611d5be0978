package main

import (
	"bufio"
	"context"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/faultproxy"
	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/loadtest/verify"
)

// The lake v2 scenarios of the fault suite: the faults of the commit
// protocol (the lake v2 issue) on real processes. Each one injects its fault
// while records flow, asserts that the fault really happened (a gap link of
// the size deleted, a reset link after the re-create, a zombie that lost
// its conditional creates, ...) and ends in the verifier against the
// producer's acknowledgements.

// lakeOpts are the knobs of a scenario's sluice.yaml beyond faultsConfig's.
type lakeOpts struct {
	storeYAML      string
	startOffset    string        // default earliest
	sessionTimeout time.Duration // default 6s
	metadataMaxAge time.Duration // default the client's
	flushRecords   int64         // default 5000
	flushBytes     int64         // default 8 MiB
	flushInterval  time.Duration // default 500ms
	budget         int64         // default 64 MiB
}

// writeLakeConfig writes a config for r's broker to dir/name and returns
// its path.
func writeLakeConfig(t *testing.T, r *crashRig, name string, o lakeOpts) string {
	t.Helper()
	if o.startOffset == "" {
		o.startOffset = "earliest"
	}
	if o.sessionTimeout == 0 {
		o.sessionTimeout = 6 * time.Second
	}
	if o.flushRecords == 0 {
		o.flushRecords = 5000
	}
	if o.flushBytes == 0 {
		o.flushBytes = 8 << 20
	}
	if o.flushInterval == 0 {
		o.flushInterval = 500 * time.Millisecond
	}
	if o.budget == 0 {
		o.budget = 64 << 20
	}
	var extra string
	if o.metadataMaxAge > 0 {
		extra = fmt.Sprintf("  metadata_max_age: %s\n", o.metadataMaxAge)
	}
	cfg := fmt.Sprintf(`kafka:
  brokers: [%q]
  group: sluice-faults
  start_offset: %s
  session_timeout: %s
  rebalance_timeout: 1s
%sstore:
%singest:
  flush_records: %d
  flush_bytes: %d
  flush_interval: %s
  flush_timeout: 30s
  memory_budget: %d
http:
  addr: 127.0.0.1:0
`, r.brokerAddr, o.startOffset, o.sessionTimeout, extra, o.storeYAML, o.flushRecords, o.flushBytes, o.flushInterval, o.budget)
	path := filepath.Join(r.dir, name)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startIngesterWith starts an ingester with the given config.
func startIngesterWith(r *crashRig, config string) *testkit.Proc {
	r.t.Helper()
	return startIngester(r.t, r.procs, r.bin, config, &r.ingesters)
}

var httpAddrRE = regexp.MustCompile(`msg="ingest starting".* http=(\S+)`)

// ingesterHTTP waits for the ingester's log to name its HTTP address.
func ingesterHTTP(t *testing.T, c *testkit.Proc) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		data, _ := os.ReadFile(c.LogPath)
		if m := httpAddrRE.FindSubmatch(data); m != nil {
			return string(m[1])
		}
		if !c.Alive() {
			t.Fatalf("%s exited before it served HTTP:\n%s", c.Name, c.Tail(20))
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s logged no HTTP address within 30s", c.Name)
	return ""
}

// scrapeMetric sums the samples of a metric (every label set whose labels
// contain each of match) from a process's /metrics.
func scrapeMetric(t *testing.T, addr, name string, match ...string) float64 {
	t.Helper()
	cl := &http.Client{Timeout: 10 * time.Second}
	resp, err := cl.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape %s: %v", addr, err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, m := range match {
			ok = ok && strings.Contains(line, m)
		}
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		sum += v
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("scrape %s: %v", addr, err)
	}
	return sum
}

// rigAdmin is an admin client of the rig's broker.
func rigAdmin(t *testing.T, r *crashRig) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(r.brokerAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

// kafkaChains returns the chains of the test topic by partition.
func kafkaChains(t *testing.T, r *crashRig) map[string]lake.Chain {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	chains, err := r.commits.Chains(ctx, crashTable)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]lake.Chain{}
	for _, c := range chains {
		if c.Source == crashSource {
			out[c.Partition] = c
		}
	}
	return out
}

// waitChains waits until ok holds for the chains.
func waitChains(t *testing.T, r *crashRig, timeout time.Duration, what string, ok func(map[string]lake.Chain) bool) map[string]lake.Chain {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		chains := kafkaChains(t, r)
		if ok(chains) {
			return chains
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", timeout, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitGeneses waits until every partition of the test topic has its
// genesis link, that is until the ingester has opened them all.
func waitGeneses(t *testing.T, r *crashRig) map[string]lake.Chain {
	t.Helper()
	return waitChains(t, r, 60*time.Second, "not every partition has its genesis", func(cs map[string]lake.Chain) bool {
		for _, p := range partitionNames(crashPartitions) {
			if len(cs[p].Records) == 0 {
				return false
			}
		}
		return true
	})
}

func partitionNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = strconv.Itoa(i)
	}
	return out
}

// topicID returns the test topic's ID, "" while it does not exist.
func topicID(t *testing.T, adm *kadm.Client) string {
	t.Helper()
	td, err := adm.ListTopics(context.Background(), crashTopic)
	if err != nil {
		t.Fatal(err)
	}
	d, ok := td[crashTopic]
	if !ok || d.Err != nil {
		return ""
	}
	return fmt.Sprintf("%x", d.ID[:])
}

// incarnation is what was produced to one incarnation of the topic.
type incarnation struct {
	sourceID string // "" for every link
	exp      *verify.Expected
}

// lakeVerify is faultsVerify over one or more incarnations of the topic,
// each compared with its own producer's acknowledgements.
func lakeVerify(t *testing.T, r *crashRig, table *faultTable, scenario, faults string, incs ...incarnation) faultRow {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	row := faultRow{scenario: scenario, faults: faults, verdict: "ok", peakRSS: ingesterPeakRSS(t, r)}
	var reports []string
	for _, inc := range incs {
		got, err := verify.ReadCommitted(ctx, r.store.bucket, crashTable, verify.Options{Source: crashSource, SourceID: inc.sourceID})
		if err != nil {
			t.Fatalf("read committed data: %v", err)
		}
		rep := verify.Compare(inc.exp, got)
		good, bad := inc.exp.Counts()
		row.events += good + bad
		row.lost += rep.Lost.Positions
		row.dups += rep.Duplicated.Positions
		if !rep.OK() || rep.CommittedRows != good || rep.CommittedDeadLetters != bad {
			row.verdict = "FAILED"
		}
		reports = append(reports, fmt.Sprintf("topic ID %q: %d good + %d malformed produced; %d gap links, %d reset links\n%s",
			inc.sourceID, good, bad, len(got.Gaps), len(got.Resets), rep))
	}
	table.add(row)
	t.Logf("%s: %s; verifier:\n%s", scenario, faults, strings.Join(reports, "\n"))
	if row.verdict != "ok" {
		t.Fatalf("exactly-once violated after %s:\n%s", scenario, strings.Join(reports, "\n"))
	}
	return row
}

// faultRetention: while the ingester is stopped, retention deletes records
// past the chain end (DeleteRecords) in half of the partitions. The next
// ingester must record each hole as a gap link of exactly the deleted
// offsets, log it at ERROR and count it, and commit every surviving record
// once.
func faultRetention(t *testing.T, bin string, params faultsParams, table *faultTable) {
	dir := t.TempDir()
	seed := crashSeed(t)
	rig := newCrashRig(t, bin, dir, localCrashStore(t, dir))
	adm := rigAdmin(t, rig)
	cfg := writeLakeConfig(t, rig, "lake.yaml", lakeOpts{storeYAML: rig.store.yaml})
	ing := startIngesterWith(rig, cfg)
	prod := startProduction(t, rig.brokerAddr, seed, crashParams{rate: params.rate, badShare: 0.005})
	rig.waitCommitting(0, 60*time.Second)
	sleepProducing(t, 3*time.Second, prod, ing)
	rig.stopIngesterGracefully(ing)
	sleepProducing(t, 3*time.Second, prod) // a backlog nobody reads

	ctx := context.Background()
	ends, _, err := rig.progress(ctx)
	if err != nil {
		t.Fatal(err)
	}
	logEnds, err := adm.ListEndOffsets(ctx, crashTopic)
	if err != nil {
		t.Fatal(err)
	}
	var offs kadm.Offsets
	type hole struct{ from, to int64 }
	holes := map[string]hole{}
	var deleted int64
	for p := int32(0); p < crashPartitions; p += 2 {
		name := strconv.Itoa(int(p))
		le, ok := logEnds.Lookup(crashTopic, p)
		if !ok || le.Err != nil {
			t.Fatalf("log end of partition %d: %v", p, le.Err)
		}
		from := ends[name]
		to := from + (le.Offset-from)/2
		if to <= from {
			t.Fatalf("partition %d: no backlog past the chain end %d (log end %d)", p, from, le.Offset)
		}
		offs.Add(kadm.Offset{Topic: crashTopic, Partition: p, At: to})
		holes[name] = hole{from, to}
		deleted += to - from
	}
	resp, err := adm.DeleteRecords(ctx, offs)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatalf("delete records: %v", err)
	}

	ing = startIngesterWith(rig, cfg)
	addr := ingesterHTTP(t, ing)
	sleepProducing(t, 3*time.Second, prod, ing)
	prod.stop(t)
	for p, h := range holes {
		// Offsets are dense (no transactions): every deleted offset was an
		// acknowledged record, which no reader can see any more.
		if g, b := prod.exp.Forget(p, h.from, h.to); g+b != h.to-h.from {
			t.Fatalf("partition %s: [%d, %d) held %d acknowledged records, want %d", p, h.from, h.to, g+b, h.to-h.from)
		}
	}
	rig.waitCommitted(prod.exp.Ends(), 3*time.Minute)
	metric := scrapeMetric(t, addr, "sluice_ingest_gap_positions_total", `table="events"`)
	rig.stopIngesterGracefully(ing)

	// Every hole is one gap link of exactly its offsets, and nothing else is.
	var gapLinks int
	for p, c := range kafkaChains(t, rig) {
		gaps := c.Gaps()
		gapLinks += len(gaps)
		h, holed := holes[p]
		switch {
		case !holed && len(gaps) > 0:
			t.Errorf("partition %s: %d gap links, none was deleted", p, len(gaps))
		case holed && (len(gaps) != 1 || gaps[0].First != lake.PositionOf(h.from) || gaps[0].Next != lake.PositionOf(h.to)):
			t.Errorf("partition %s: gap links %+v, want one [%d, %d)", p, gaps, h.from, h.to)
		}
	}
	var logged int64
	lines := ing.LogLines(t, "level=ERROR", "recorded as a gap link")
	for _, l := range lines {
		m := regexp.MustCompile(` positions=(\d+)`).FindStringSubmatch(l)
		if m == nil {
			t.Errorf("gap log line without positions: %s", l)
			continue
		}
		n, _ := strconv.ParseInt(m[1], 10, 64)
		logged += n
	}
	if len(lines) != len(holes) || logged != deleted {
		t.Errorf("%d gap lines at ERROR for %d positions, want %d for %d", len(lines), logged, len(holes), deleted)
	}
	if int64(metric) != deleted {
		t.Errorf("sluice_ingest_gap_positions_total = %v, want %d", metric, deleted)
	}
	lakeVerify(t, rig, table, "retention past chain end",
		fmt.Sprintf("%d records past the chain end deleted in %d of %d partitions while stopped; %d gap links (%d positions), %d ERROR lines, metric %v",
			deleted, len(holes), crashPartitions, gapLinks, deleted, len(lines), metric),
		incarnation{exp: prod.exp})
}

// faultLatestKill: start_offset latest, records flowing; the first
// ingester writes every partition's genesis and is delivered records, but
// is killed with SIGKILL before its first data commit (its flush interval
// is long). The next one must start from the genesis, not resolve latest
// again: everything produced after the genesis is committed once.
func faultLatestKill(t *testing.T, bin string, params faultsParams, table *faultTable) {
	dir := t.TempDir()
	seed := crashSeed(t)
	rig := newCrashRig(t, bin, dir, localCrashStore(t, dir))
	slow := writeLakeConfig(t, rig, "slow.yaml", lakeOpts{storeYAML: rig.store.yaml, startOffset: "latest",
		flushRecords: 10_000_000, flushBytes: 256 << 20, flushInterval: 10 * time.Minute, budget: 512 << 20})
	normal := writeLakeConfig(t, rig, "lake.yaml", lakeOpts{storeYAML: rig.store.yaml, startOffset: "latest"})
	prod := startProduction(t, rig.brokerAddr, seed, crashParams{rate: params.rate, badShare: 0.005})
	sleepProducing(t, 2*time.Second, prod) // records before the table starts: not wanted

	first := startIngesterWith(rig, slow)
	addr := ingesterHTTP(t, first)
	geneses := waitGeneses(t, rig)
	sleepProducing(t, 2*time.Second, prod, first)
	received := scrapeMetric(t, addr, "sluice_ingest_records_received_total")
	for p, c := range kafkaChains(t, rig) {
		if len(c.Records) != 1 {
			t.Fatalf("partition %s has %d links before the kill, want only its genesis: the kill is not before the first commit", p, len(c.Records))
		}
	}
	if received == 0 {
		t.Fatal("the first ingester was delivered no records before the kill")
	}
	killChild(t, first)

	second := startIngesterWith(rig, normal)
	sleepProducing(t, 4*time.Second, prod, second)
	prod.stop(t)
	// Records before each genesis were never wanted.
	var before int64
	for _, p := range partitionNames(crashPartitions) {
		g := geneses[p].Records[0]
		at, _ := g.First.Int64()
		if g.Kind != lake.LinkGenesis || !strings.Contains(g.Reason, "latest") || at <= 0 {
			t.Fatalf("partition %s starts with %+v, want a genesis of start_offset latest past offset 0", p, g)
		}
		gd, bd := prod.exp.Forget(p, 0, at)
		before += gd + bd
	}
	rig.waitCommitted(prod.exp.Ends(), 3*time.Minute)
	rig.stopIngesterGracefully(second)
	for p, c := range kafkaChains(t, rig) {
		if len(c.Records) < 2 || !sameLink(c.Records[0], geneses[p].Records[0]) || slices.ContainsFunc(c.Records[1:], func(r lake.CommitRecord) bool { return r.Kind == lake.LinkGenesis }) {
			t.Errorf("partition %s: the chain does not continue its first genesis", p)
		}
	}
	lakeVerify(t, rig, table, "latest + SIGKILL before 1st commit",
		fmt.Sprintf("8 geneses at latest (%d records before them); SIGKILL after %.0f records delivered, before any data link", before, received),
		incarnation{exp: prod.exp})
}

// faultTopicRecreated: the topic is deleted and re-created while the
// ingester runs. Records of both incarnations must be committed once, each
// partition's chain must hold a reset link to the new topic ID, and each
// incarnation is verified against its own producer (offsets repeat).
func faultTopicRecreated(t *testing.T, bin string, params faultsParams, table *faultTable) {
	dir := t.TempDir()
	seed := crashSeed(t)
	rig := newCrashRig(t, bin, dir, localCrashStore(t, dir), "--auto-create-topics=false")
	adm := rigAdmin(t, rig)
	cfg := writeLakeConfig(t, rig, "lake.yaml", lakeOpts{storeYAML: rig.store.yaml})
	ing := startIngesterWith(rig, cfg)
	old := startProduction(t, rig.brokerAddr, seed, crashParams{rate: params.rate, badShare: 0.005})
	rig.waitCommitting(0, 60*time.Second)
	sleepProducing(t, 4*time.Second, old, ing)
	old.stop(t)
	// Everything of the old topic is in before it goes: what it still
	// held when deleted is gone from the source, not lost by ingestion.
	rig.waitCommitted(old.exp.Ends(), 2*time.Minute)
	oldID := topicID(t, adm)

	ctx := context.Background()
	if _, err := adm.DeleteTopics(ctx, crashTopic); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for topicID(t, adm) != "" {
		if time.Now().After(deadline) {
			t.Fatal("the topic was not deleted")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if resp, err := adm.CreateTopic(ctx, crashPartitions, 1, nil, crashTopic); err != nil || resp.Err != nil {
		t.Fatalf("re-create the topic: %v %v", err, resp.Err)
	}
	var newID string
	for deadline := time.Now().Add(30 * time.Second); newID == "" || newID == oldID; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("re-created topic has ID %q, the old one %q", newID, oldID)
		}
		newID = topicID(t, adm)
	}
	fresh := startProduction(t, rig.brokerAddr, seed+1, crashParams{rate: params.rate, badShare: 0.005})
	sleepProducing(t, 4*time.Second, fresh, ing)
	fresh.stop(t)
	stopped := time.Now()
	want := fresh.exp.Ends()
	chains := waitChains(t, rig, 2*time.Minute, "the new topic's records are not all committed", func(cs map[string]lake.Chain) bool {
		for _, p := range partitionNames(crashPartitions) {
			end, ok := cs[p].End()
			if n, _ := end.Next.Int64(); !ok || end.SourceID != newID || n < want[p] {
				return false
			}
		}
		return true
	})
	caughtUp := time.Since(stopped)
	if !ing.Alive() {
		t.Fatal("the ingester exited")
	}
	rig.stopIngesterGracefully(ing)

	var resets int
	for p, c := range chains {
		var rs []lake.CommitRecord
		for _, r := range c.Records {
			if r.Kind == lake.LinkReset {
				rs = append(rs, r)
			}
		}
		resets += len(rs)
		if len(rs) != 1 || rs[0].SourceID != newID || rs[0].First != lake.PositionOf(0) {
			t.Errorf("partition %s: reset links %+v, want one to topic ID %s at offset 0", p, rs, newID)
		}
	}
	lakeVerify(t, rig, table, "topic deleted + re-created",
		fmt.Sprintf("deleted and re-created under the running ingester; %d reset links; new topic all committed %s after its producer stopped", resets, caughtUp.Round(100*time.Millisecond)),
		incarnation{sourceID: oldID, exp: old.exp}, incarnation{sourceID: newID, exp: fresh.exp})
}

// groupMembers returns the group's members and their partitions of the
// test topic.
func groupMembers(t *testing.T, adm *kadm.Client) map[string][]int32 {
	t.Helper()
	ds, err := adm.DescribeGroups(context.Background(), "sluice-faults")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]int32{}
	for _, g := range ds {
		for _, m := range g.Members {
			var ps []int32
			if c, ok := m.Assigned.AsConsumer(); ok {
				for _, tp := range c.Topics {
					if tp.Topic == crashTopic {
						ps = append(ps, tp.Partitions...)
					}
				}
			}
			slices.Sort(ps)
			out[m.MemberID] = ps
		}
	}
	return out
}

// waitGroup waits until the group's assignment satisfies ok.
func waitGroup(t *testing.T, adm *kadm.Client, timeout time.Duration, what string, ok func(map[string][]int32) bool) map[string][]int32 {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		m := groupMembers(t, adm)
		if ok(m) {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s (group: %v)", timeout, what, m)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// faultZombie: two ingesters in one group, started at different times
// (the first with start_offset earliest, the second latest).
// One is stopped with SIGSTOP while it holds records and its partitions;
// the group moves them to the other (session timeout), which commits on
// them; then the stopped one is resumed (SIGCONT). It wakes up and flushes
// what it held: each commit must lose its conditional create to the links
// the other wrote meanwhile, and the zombie rewinds. Nothing is lost or
// doubled.
func faultZombie(t *testing.T, bin string, params faultsParams, table *faultTable) {
	dir := t.TempDir()
	seed := crashSeed(t)
	rig := newCrashRig(t, bin, dir, localCrashStore(t, dir))
	adm := rigAdmin(t, rig)
	// Flushes every 2 s: the zombie holds up to 2 s of records when stopped.
	cfg := writeLakeConfig(t, rig, "lake.yaml", lakeOpts{storeYAML: rig.store.yaml, flushRecords: 50_000, flushInterval: 2 * time.Second})
	zombie := startIngesterWith(rig, cfg)
	zAddr := ingesterHTTP(t, zombie)
	prod := startProduction(t, rig.brokerAddr, seed, crashParams{rate: params.rate, badShare: 0.005})
	rig.waitCommitting(0, 60*time.Second)
	// The only writer so far: its links name it.
	var zWriter string
	for _, c := range kafkaChains(t, rig) {
		if n := len(c.Records); n > 1 {
			zWriter = c.Records[n-1].Writer
		}
	}
	sleepProducing(t, 2*time.Second, prod, zombie)

	// The second one would start new partitions at latest: it must follow
	// the chains the first one began (their geneses are pinned), never
	// resolve a start of its own.
	other := startIngesterWith(rig, writeLakeConfig(t, rig, "latest.yaml", lakeOpts{storeYAML: rig.store.yaml,
		startOffset: "latest", flushRecords: 50_000, flushInterval: 2 * time.Second}))
	members := waitGroup(t, adm, 60*time.Second, "the second ingester did not get partitions", func(m map[string][]int32) bool {
		if len(m) != 2 {
			return false
		}
		for _, ps := range m {
			if len(ps) == 0 {
				return false
			}
		}
		return true
	})
	// Let both commit on their partitions, then find the zombie's member by
	// the writers of its partitions' newest links.
	sleepProducing(t, 4*time.Second, prod, zombie, other)
	chains := kafkaChains(t, rig)
	var zMember string
	var zParts []int32
	for id, ps := range members {
		mine := true
		for _, p := range ps {
			c := chains[strconv.Itoa(int(p))]
			mine = mine && len(c.Records) > 0 && c.Records[len(c.Records)-1].Writer == zWriter
		}
		if mine {
			zMember, zParts = id, ps
		}
	}
	if zMember == "" {
		t.Fatalf("no member of %v writes only as the first ingester (%s)", members, zWriter)
	}

	conflictsBefore := scrapeMetric(t, zAddr, "sluice_ingest_flush_failures_total", `reason="conflict"`)
	rewindsBefore := scrapeMetric(t, zAddr, "sluice_ingest_rewinds_total")
	if err := zombie.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	waitGroup(t, adm, 60*time.Second, "the stopped ingester's partitions did not move", func(m map[string][]int32) bool {
		_, zIn := m[zMember]
		return !zIn && len(m) == 1 && slices.ContainsFunc(slices.Collect(maps.Values(m)), func(ps []int32) bool { return len(ps) == crashPartitions })
	})
	moved := time.Since(stopped)
	// The other ingester commits on every one of the zombie's partitions.
	waitChains(t, rig, 60*time.Second, "the zombie's partitions got no links from their new owner", func(cs map[string]lake.Chain) bool {
		for _, p := range zParts {
			c := cs[strconv.Itoa(int(p))]
			last := c.Records[len(c.Records)-1]
			if last.Writer == zWriter || last.CommittedAt.Before(stopped) {
				return false
			}
		}
		return true
	})
	sleepProducing(t, time.Second, prod, other)
	stoppedFor := time.Since(stopped)
	// Links are never replaced: whatever the zombie does once it wakes up,
	// every link committed by now must stay as it is.
	before := kafkaChains(t, rig)
	if err := zombie.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	resumed := time.Now()
	sleepProducing(t, 8*time.Second, prod, zombie, other)
	conflicts := scrapeMetric(t, zAddr, "sluice_ingest_flush_failures_total", `reason="conflict"`) - conflictsBefore
	rewinds := scrapeMetric(t, zAddr, "sluice_ingest_rewinds_total") - rewindsBefore
	prod.stop(t)
	rig.waitCommitted(prod.exp.Ends(), 3*time.Minute)
	rig.stopIngesterGracefully(zombie)
	rig.stopIngesterGracefully(other)

	// The zombie lost its creates, no link committed before it woke up was
	// replaced, and no link of its old partitions carries it while it was
	// stopped; the verifier checks that the chains are whole.
	if conflicts == 0 {
		t.Errorf("the zombie lost no conditional create after it woke up (rewinds %v): it held nothing to commit, the scenario proved nothing", rewinds)
	}
	after := kafkaChains(t, rig)
	for p, c := range before {
		for i, r := range c.Records {
			if i >= len(after[p].Records) || !sameLink(after[p].Records[i], r) {
				t.Errorf("partition %s: link %d (by %s) was replaced after the zombie woke up", p, r.Seq, r.Writer)
			}
		}
	}
	for _, p := range zParts {
		for _, r := range after[strconv.Itoa(int(p))].Records {
			if r.Writer == zWriter && r.CommittedAt.After(stopped) && r.CommittedAt.Before(resumed) {
				t.Errorf("partition %d: link %d by the zombie while it was stopped", p, r.Seq)
			}
		}
	}
	lakeVerify(t, rig, table, "zombie ingester (SIGSTOP)",
		fmt.Sprintf("SIGSTOP %s with partitions %v; moved to the other after %s; SIGCONT after %s: %v of its commits lost to the new owner's links, %v rewinds",
			zombie.Name, zParts, moved.Round(100*time.Millisecond), stoppedFor.Round(100*time.Millisecond), conflicts, rewinds),
		incarnation{exp: prod.exp})
}

// faultPartitionsAdded: start_offset latest, records flowing; partitions
// are added to the topic and a producer that knows them writes to them at
// once, before the ingester notices (its metadata refresh). Those records
// must all be committed: a partition added after the table started begins
// at its start, not at latest.
func faultPartitionsAdded(t *testing.T, bin string, params faultsParams, table *faultTable) {
	const added = 4
	dir := t.TempDir()
	seed := crashSeed(t)
	rig := newCrashRig(t, bin, dir, localCrashStore(t, dir))
	adm := rigAdmin(t, rig)
	cfg := writeLakeConfig(t, rig, "lake.yaml", lakeOpts{storeYAML: rig.store.yaml, startOffset: "latest", metadataMaxAge: 3 * time.Second})
	ing := startIngesterWith(rig, cfg)
	waitChains(t, rig, 60*time.Second, "not every partition has its genesis", func(cs map[string]lake.Chain) bool {
		return len(cs) == crashPartitions
	})
	prod := startProduction(t, rig.brokerAddr, seed, crashParams{rate: params.rate / 2, badShare: 0.005})
	rig.waitCommitting(0, 60*time.Second)
	sleepProducing(t, 2*time.Second, prod, ing)

	if resp, err := adm.CreatePartitions(context.Background(), added, crashTopic); err != nil || resp.Error() != nil {
		t.Fatalf("add partitions: %v %v", err, resp.Error())
	}
	grown := time.Now()
	more := startProduction(t, rig.brokerAddr, seed+1, crashParams{rate: params.rate / 2, badShare: 0.005})
	// When each new partition got its first acknowledged record.
	firstAck := map[string]time.Time{}
	for time.Since(grown) < 5*time.Second {
		for p := range more.exp.Ends() {
			if _, seen := firstAck[p]; !seen {
				firstAck[p] = time.Now()
			}
		}
		sleepProducing(t, 20*time.Millisecond, more, ing)
		if err := prod.failed(); err != nil {
			t.Fatalf("producer: %v", err)
		}
	}
	prod.stop(t)
	more.stop(t)
	prod.exp.Merge(more.exp)
	rig.waitCommitted(prod.exp.Ends(), 3*time.Minute)
	rig.stopIngesterGracefully(ing)

	chains := kafkaChains(t, rig)
	var early []string // new partitions with records before their genesis
	var toNew int64
	var noticed time.Duration
	ends := prod.exp.Ends()
	for p := crashPartitions; p < crashPartitions+added; p++ {
		name := strconv.Itoa(p)
		c := chains[name]
		toNew += ends[name] // offsets are dense from 0
		if len(c.Records) > 0 {
			noticed = max(noticed, c.Records[0].CommittedAt.Sub(grown))
			if at, ok := firstAck[name]; ok && at.Before(c.Records[0].CommittedAt) {
				early = append(early, name)
			}
		}
		if len(c.Records) < 2 || c.Records[0].Kind != lake.LinkGenesis || c.Records[0].First != lake.PositionOf(0) {
			desc := "no links"
			if len(c.Records) > 0 {
				g := c.Records[0]
				desc = fmt.Sprintf("%d links, the first a %s at %s (%s)", len(c.Records), g.Kind, g.First, g.Reason)
			}
			t.Errorf("new partition %s: %s; want a genesis at 0 and data", name, desc)
			continue
		}
	}
	if len(early) == 0 {
		t.Errorf("no new partition had records before the ingester opened it: the scenario proved nothing")
	}
	lakeVerify(t, rig, table, "partitions added (latest)",
		fmt.Sprintf("%d partitions added mid-run, %d records produced to them at once; opened within %s, %d of them already had records",
			added, toNew, noticed.Round(100*time.Millisecond), len(early)),
		incarnation{exp: prod.exp})
}

// faultS3Errors: a large backlog waits in Kafka when the ingester starts;
// for its first seconds the proxy fails a random (seeded) share of the PUTs
// to the bucket (raw objects, dead letters, commit records), some after the
// server acted on them (a lost response), some with a retryable 503, some
// with a permanent 400. Several flushes of a partition are in flight at
// once, so they fail in random order; each failure rewinds its partition.
func faultS3Errors(t *testing.T, bin string, params faultsParams, table *faultTable) {
	const failFor, share = 12 * time.Second, 0.25
	store, proxy := proxiedS3Store(t)
	dir := t.TempDir()
	seed := crashSeed(t)
	rig := newCrashRig(t, bin, dir, store)
	cfg := writeLakeConfig(t, rig, "lake.yaml", lakeOpts{storeYAML: store.yaml, flushRecords: 2000})
	prod := startProduction(t, rig.brokerAddr, seed, crashParams{rate: 2 * params.rate, badShare: 0.005})
	sleepProducing(t, 6*time.Second, prod)
	backlog := prod.acked()

	// The failures begin once the ingester has opened every partition: a
	// 400 is permanent, and a process that meets one while it proves the
	// store honours conditional writes rightly refuses to start. One that
	// meets them while it opens its partitions fails its group join and
	// tries again later; when the window fell there (CI, 2026-12-02), the
	// partitions opened only after it closed and no flush met a failure.
	// What is tested here is the flushes of the backlog, and of the
	// production after it, meeting them.
	ing := startIngesterWith(rig, cfg)
	addr := ingesterHTTP(t, ing)
	waitGeneses(t, rig)
	proxy.SetFailures(faultproxy.Failures{Method: http.MethodPut, Share: share, Forwarded: 0.3, Seed: uint64(seed),
		Answers: []faultproxy.Answer{{Status: 503, Code: "SlowDown"}, {Status: 500, Code: "InternalError"}, {Status: 400, Code: "IncompleteBody"}}})
	sleepProducing(t, failFor, prod, ing)
	proxy.SetFailures(faultproxy.Failures{})
	st := proxy.Stats()
	failures := scrapeMetric(t, addr, "sluice_ingest_flush_failures_total")
	uploadFailures := scrapeMetric(t, addr, "sluice_ingest_flush_failures_total", `reason="upload"`)
	commitFailures := scrapeMetric(t, addr, "sluice_ingest_flush_failures_total", `reason="commit"`) +
		scrapeMetric(t, addr, "sluice_ingest_flush_failures_total", `reason="conflict"`)
	rewinds := scrapeMetric(t, addr, "sluice_ingest_rewinds_total")
	sleepProducing(t, 3*time.Second, prod, ing)
	prod.stop(t)
	rig.waitCommitted(prod.exp.Ends(), 3*time.Minute)
	rig.stopIngesterGracefully(ing)
	if failures == 0 || rewinds == 0 {
		t.Errorf("%d PUTs failed but %v flushes failed and %v partitions rewound: the errors never reached a flush", st.Failed, failures, rewinds)
	}
	lakeVerify(t, rig, table, "s3 errors on flush (backlog)",
		fmt.Sprintf("%d-record backlog; %d PUTs failed over %s (%d after the server acted); %v flushes failed (%v uploads, %v commits), %v of them while another flush of the partition had already failed; %v rewinds",
			backlog, st.Failed, failFor, st.Forwarded, failures, uploadFailures, commitFailures, failures-rewinds, rewinds),
		incarnation{exp: prod.exp})
}

func sameLink(a, b lake.CommitRecord) bool {
	return a.Seq == b.Seq && a.Kind == b.Kind && a.First == b.First && a.Next == b.Next && a.Writer == b.Writer && a.CommittedAt.Equal(b.CommittedAt)
}
