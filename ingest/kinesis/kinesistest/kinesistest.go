package kinesistest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"math/big"
	"os"
	"sort"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/parquet-go/parquet-go"

	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
)

// EnvEndpoint names the server, as scripts/kinesalite.sh writes it.
const EnvEndpoint = "SLUICE_TEST_KINESIS_ENDPOINT"

// Region and static credentials the tests use (kinesalite checks neither).
const (
	Region    = "us-east-1"
	AccessKey = "sluicetest"
	SecretKey = "sluicetestsecret"
)

// Endpoint returns the server's URL, or skips the test when none is
// configured. Under CI (env CI set and not "false") a missing server fails
// the test instead, so CI cannot pass by skipping.
func Endpoint(t testing.TB) string {
	t.Helper()
	e := os.Getenv(EnvEndpoint)
	if e == "" {
		msg := fmt.Sprintf("Kinesis test server not configured: set %s (scripts/kinesalite.sh start)", EnvEndpoint)
		if ci := os.Getenv("CI"); ci != "" && ci != "false" && ci != "0" {
			t.Fatal(msg + "; CI is set, so this is a failure, not a skip")
		}
		t.Skip(msg)
	}
	return e
}

// NewClient returns a client of the server at endpoint.
func NewClient(endpoint string) *kinesis.Client {
	return kinesis.New(kinesis.Options{
		Region:       Region,
		BaseEndpoint: aws.String(endpoint),
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: AccessKey, SecretAccessKey: SecretKey}, nil
		}),
	})
}

// StreamName returns a fresh stream name, so tests sharing a server never
// meet.
func StreamName(prefix string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])
}

// CreateStream creates stream with shards shards and waits until it is
// active. The stream is deleted after the test: kinesalite keeps every
// record in memory.
func CreateStream(t testing.TB, c *kinesis.Client, stream string, shards int32) {
	t.Helper()
	ctx := context.Background()
	if _, err := c.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String(stream), ShardCount: aws.Int32(shards)}); err != nil {
		t.Fatalf("create stream %s: %v", stream, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = c.DeleteStream(ctx, &kinesis.DeleteStreamInput{StreamName: aws.String(stream)})
	})
	WaitActive(t, c, stream)
}

// WaitActive waits (bounded) until stream is active again after a change.
func WaitActive(t testing.TB, c *kinesis.Client, stream string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		out, err := c.DescribeStreamSummary(context.Background(), &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(stream)})
		if err == nil && out.StreamDescriptionSummary.StreamStatus == types.StreamStatusActive {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("stream %s not active after 30s", stream)
}

// Produced is the truth about what a producer put: for each record's id,
// the shard and sequence number the server answered.
type Produced struct {
	Shard map[string]string // event id -> shard
	Seq   map[string]string // event id -> sequence number
	Key   map[string]string // event id -> partition key
	Order []string          // event ids in the order they were put
}

// NewProduced returns an empty record of what was put.
func NewProduced() *Produced {
	return &Produced{Shard: map[string]string{}, Seq: map[string]string{}, Key: map[string]string{}}
}

// Event is a record of the test table (see TableYAML).
func Event(id, key string, ts time.Time) []byte {
	return fmt.Appendf(nil, `{"ts":%q,"event_id":%q,"pkey":%q,"n":1}`, ts.UTC().Format(time.RFC3339Nano), id, key)
}

// TableYAML is a table reading stream, for schema.Parse.
func TableYAML(table, stream string) []byte {
	return fmt.Appendf(nil, `tables:
  - name: %s
    kinesis: {stream: %s}
    event_time: {field: ts}
    fields:
      - {name: ts, type: timestamp, format: rfc3339, unit: micros}
      - {name: event_id, type: string}
      - {name: pkey, type: string}
      - {name: n, type: int64}
`, table, stream)
}

// Put puts records ids [from, from+n) to stream in PutRecords batches of
// up to 500, with keys spread over keys partition keys, and records each
// answer in p. Records the server refused (throttled) are put again.
func Put(ctx context.Context, c *kinesis.Client, stream string, p *Produced, prefix string, from, n, keys int) error {
	for i := from; i < from+n; {
		end := min(i+500, from+n)
		type pending struct{ id, key string }
		var batch []pending
		for j := i; j < end; j++ {
			batch = append(batch, pending{fmt.Sprintf("%s%d", prefix, j), fmt.Sprintf("k%d", j%keys)})
		}
		for attempt := 0; len(batch) > 0; attempt++ {
			if attempt > 50 {
				return fmt.Errorf("put records: still refused after 50 attempts")
			}
			entries := make([]types.PutRecordsRequestEntry, len(batch))
			for k, b := range batch {
				entries[k] = types.PutRecordsRequestEntry{Data: Event(b.id, b.key, time.Now()), PartitionKey: aws.String(b.key)}
			}
			out, err := c.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: aws.String(stream), Records: entries})
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				time.Sleep(100 * time.Millisecond)
				continue
			}
			var again []pending
			for k, r := range out.Records {
				if r.ErrorCode != nil {
					again = append(again, batch[k])
					continue
				}
				id := batch[k].id
				p.Shard[id], p.Seq[id], p.Key[id] = aws.ToString(r.ShardId), aws.ToString(r.SequenceNumber), batch[k].key
				p.Order = append(p.Order, id)
			}
			batch = again
		}
		i = end
	}
	return nil
}

// Row is one committed row: the shard it was read from and its id.
type Row struct {
	Shard   string `parquet:"_partition"`
	EventID string `parquet:"event_id"`
	Key     string `parquet:"pkey"`
}

// Committed is what the lake holds of a table: every row of every object a
// commit record names, and the chains.
type Committed struct {
	Rows   map[string][]string  // event id -> shards it was committed from (once each, if exact)
	At     map[string]time.Time // event id -> when the link holding it was committed
	Chains []lake.Chain
}

// ReadCommitted reads back every committed raw object of table.
func ReadCommitted(t testing.TB, b objstore.Bucket, table string) Committed {
	t.Helper()
	ctx := context.Background()
	chains, err := lake.NewCommitLog(b).Chains(ctx, table)
	if err != nil {
		t.Fatal(err)
	}
	out := Committed{Rows: map[string][]string{}, At: map[string]time.Time{}, Chains: chains}
	for _, ch := range chains {
		for _, rec := range ch.Records {
			for _, obj := range rec.Objects {
				if obj.Kind != lake.KindRaw {
					continue
				}
				rc, err := b.Get(ctx, obj.Key)
				if err != nil {
					t.Fatalf("committed object %s unreadable: %v", obj.Key, err)
				}
				data, err := io.ReadAll(rc)
				rc.Close()
				if err != nil {
					t.Fatal(err)
				}
				rows, err := parquet.Read[Row](bytes.NewReader(data), int64(len(data)))
				if err != nil {
					t.Fatalf("read %s: %v", obj.Key, err)
				}
				for _, r := range rows {
					out.Rows[r.EventID] = append(out.Rows[r.EventID], r.Shard)
					out.At[r.EventID] = rec.CommittedAt
				}
			}
		}
	}
	return out
}

// Count returns how many rows c holds.
func (c Committed) Count() int {
	n := 0
	for _, s := range c.Rows {
		n += len(s)
	}
	return n
}

// Check compares what was committed with what was produced: every record
// exactly once, from the shard the server put it in. It returns a list of
// problems (at most a few of each kind), empty when exact.
func Check(p *Produced, c Committed) []string {
	var lost, dup, wrong, extra []string
	for id, shard := range p.Shard {
		got := c.Rows[id]
		switch {
		case len(got) == 0:
			lost = append(lost, id)
		case len(got) > 1:
			dup = append(dup, id)
		case got[0] != shard:
			wrong = append(wrong, fmt.Sprintf("%s in %s, put in %s", id, got[0], shard))
		}
	}
	for id := range c.Rows {
		if _, ok := p.Shard[id]; !ok {
			extra = append(extra, id)
		}
	}
	var out []string
	for _, k := range []struct {
		what string
		ids  []string
	}{{"lost", lost}, {"duplicated", dup}, {"in another shard", wrong}, {"never produced", extra}} {
		if len(k.ids) > 0 {
			sort.Strings(k.ids)
			out = append(out, fmt.Sprintf("%d %s, e.g. %v", len(k.ids), k.what, k.ids[:min(5, len(k.ids))]))
		}
	}
	return out
}

// Split splits shard in two at the middle of its hash key range and waits
// until the stream is active again.
func Split(t testing.TB, c *kinesis.Client, stream, shard string) {
	t.Helper()
	sh := findShard(t, c, stream, shard)
	lo, _ := new(big.Int).SetString(aws.ToString(sh.HashKeyRange.StartingHashKey), 10)
	hi, _ := new(big.Int).SetString(aws.ToString(sh.HashKeyRange.EndingHashKey), 10)
	mid := lo.Add(lo, hi).Rsh(lo, 1)
	if _, err := c.SplitShard(context.Background(), &kinesis.SplitShardInput{StreamName: aws.String(stream),
		ShardToSplit: aws.String(shard), NewStartingHashKey: aws.String(mid.String())}); err != nil {
		t.Fatalf("split %s: %v", shard, err)
	}
	WaitActive(t, c, stream)
}

// Merge merges two adjacent shards and waits until the stream is active
// again.
func Merge(t testing.TB, c *kinesis.Client, stream, shard, adjacent string) {
	t.Helper()
	if _, err := c.MergeShards(context.Background(), &kinesis.MergeShardsInput{StreamName: aws.String(stream),
		ShardToMerge: aws.String(shard), AdjacentShardToMerge: aws.String(adjacent)}); err != nil {
		t.Fatalf("merge %s and %s: %v", shard, adjacent, err)
	}
	WaitActive(t, c, stream)
}

// OpenShards lists the stream's open shards, in hash key order.
func OpenShards(t testing.TB, c *kinesis.Client, stream string) []types.Shard {
	t.Helper()
	out, err := c.ListShards(context.Background(), &kinesis.ListShardsInput{StreamName: aws.String(stream)})
	if err != nil {
		t.Fatal(err)
	}
	var open []types.Shard
	for _, sh := range out.Shards {
		if sh.SequenceNumberRange.EndingSequenceNumber == nil {
			open = append(open, sh)
		}
	}
	sort.Slice(open, func(i, j int) bool {
		a, _ := new(big.Int).SetString(aws.ToString(open[i].HashKeyRange.StartingHashKey), 10)
		b, _ := new(big.Int).SetString(aws.ToString(open[j].HashKeyRange.StartingHashKey), 10)
		return a.Cmp(b) < 0
	})
	return open
}

func findShard(t testing.TB, c *kinesis.Client, stream, shard string) types.Shard {
	t.Helper()
	for _, sh := range OpenShards(t, c, stream) {
		if aws.ToString(sh.ShardId) == shard {
			return sh
		}
	}
	t.Fatalf("shard %s of %s is not open", shard, stream)
	return types.Shard{}
}

// CheckResharding checks the order resharding must keep, from the lake
// alone: every closed shard's chain ends with an end link, and no child's
// first data link was committed before each parent's end link. shards are
// the stream's shards as ListShards gives them.
func CheckResharding(shards []types.Shard, c Committed) []string {
	chains := map[string]lake.Chain{}
	for _, ch := range c.Chains {
		chains[ch.Partition] = ch
	}
	var out []string
	endAt := map[string]time.Time{}
	for _, sh := range shards {
		id := aws.ToString(sh.ShardId)
		if sh.SequenceNumberRange.EndingSequenceNumber == nil {
			continue
		}
		ch, ok := chains[id]
		if !ok || len(ch.Records) == 0 || ch.Records[len(ch.Records)-1].Kind != lake.LinkEnd {
			out = append(out, fmt.Sprintf("closed shard %s: its chain has no end link", id))
			continue
		}
		end := ch.Records[len(ch.Records)-1]
		if end.Lag != 0 {
			out = append(out, fmt.Sprintf("closed shard %s: its end link has lag %d, which would hold the watermark back", id, end.Lag))
		}
		endAt[id] = end.CommittedAt
	}
	for _, sh := range shards {
		id := aws.ToString(sh.ShardId)
		for _, p := range []*string{sh.ParentShardId, sh.AdjacentParentShardId} {
			parent := aws.ToString(p)
			if parent == "" {
				continue
			}
			for _, r := range chains[id].Records {
				if r.Kind == lake.LinkData && r.CommittedAt.Before(endAt[parent]) {
					out = append(out, fmt.Sprintf("shard %s: link %d committed at %s, before parent %s ended at %s",
						id, r.Seq, r.CommittedAt.Format(time.RFC3339Nano), parent, endAt[parent].Format(time.RFC3339Nano)))
				}
			}
		}
	}
	return out
}

// AllShards lists every shard of the stream, open and closed.
func AllShards(t testing.TB, c *kinesis.Client, stream string) []types.Shard {
	t.Helper()
	out, err := c.ListShards(context.Background(), &kinesis.ListShardsInput{StreamName: aws.String(stream)})
	if err != nil {
		t.Fatal(err)
	}
	return out.Shards
}

// CheckKeyOrder checks that each partition key's records were committed
// in the order they were put: along a key's records in production order,
// the commit times of the links holding them never go back. Within a shard
// links commit in order; across a split or merge this holds only if no
// child link was committed before its parents ended.
func CheckKeyOrder(p *Produced, c Committed) []string {
	last := map[string]time.Time{}
	lastID := map[string]string{}
	var out []string
	for _, id := range p.Order {
		key := p.Key[id]
		at, ok := c.At[id]
		if !ok {
			continue // lost: Check reports it
		}
		if at.Before(last[key]) {
			out = append(out, fmt.Sprintf("key %s: %s (put after %s) committed at %s, before it at %s",
				key, id, lastID[key], at.Format(time.RFC3339Nano), last[key].Format(time.RFC3339Nano)))
			if len(out) >= 5 {
				break
			}
		}
		last[key], lastID[key] = at, id
	}
	return out
}
