package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/sluicehq/sluice/loadtest/gen"
	"github.com/sluicehq/sluice/schema"
)

// KinesisConfig points the drain benchmark at a Kinesis-compatible server
// instead of a broker process of its own.
type KinesisConfig struct {
	// Endpoint is the server's URL, e.g. http://127.0.0.1:4567 (kinesalite).
	Endpoint string
	// Region and static credentials for the server; kinesalite checks
	// neither, so the defaults are placeholders.
	Region, AccessKey, SecretKey string
	// ServerPid, when known, is the server process: its CPU time during the
	// drain is reported next to the ingester's.
	ServerPid int
	// Putters is how many PutRecords calls are in flight at once.
	Putters int
}

// Kinesis limits a producer must respect: 500 records per PutRecords call.
const putRecordsMax = 500

// RunIngestKinesis is RunIngest against a stream: it creates a stream of
// cfg.Partitions shards on kc.Endpoint, puts the same generated events
// (same generator, seed and keys as the Kafka variant: the user id is the
// partition key), then runs the ingester process against the stream and
// waits until the commit log holds every event. The stream is deleted
// afterwards (kinesalite keeps every record in memory).
func RunIngestKinesis(ctx context.Context, cfg IngestConfig, kc KinesisConfig) (IngestResult, error) {
	var res IngestResult
	if cfg.Progress == nil {
		cfg.Progress = func(string, int64, int64) {}
	}
	if kc.Endpoint == "" {
		return res, errors.New("kinesis benchmark: no endpoint")
	}
	if kc.Region == "" {
		kc.Region = "us-east-1"
	}
	if kc.AccessKey == "" {
		kc.AccessKey, kc.SecretKey = "sluicebench", "sluicebench"
	}
	if kc.Putters <= 0 {
		kc.Putters = 4
	}
	if cfg.Partitions <= 0 {
		return res, fmt.Errorf("kinesis benchmark: %d shards", cfg.Partitions)
	}
	cl := kinesis.New(kinesis.Options{
		Region:       kc.Region,
		BaseEndpoint: aws.String(kc.Endpoint),
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: kc.AccessKey, SecretAccessKey: kc.SecretKey}, nil
		}),
	})
	stream := fmt.Sprintf("sluice-bench-%d", time.Now().UnixNano())
	if err := createStream(ctx, cl, stream, cfg.Partitions); err != nil {
		return res, err
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_, _ = cl.DeleteStream(dctx, &kinesis.DeleteStreamInput{StreamName: aws.String(stream)})
	}()

	start := time.Now()
	cfg.Progress("produce", 0, cfg.Events) // the phase's clock starts here, not at its first report
	n, size, err := putEvents(ctx, cl, stream, cfg, kc.Putters)
	if err != nil {
		return res, err
	}
	res.Events, res.InputBytes, res.Produce = n, size, time.Since(start)

	tables := bytes.Replace(schema.SampleYAML, []byte("topic: events"), fmt.Appendf(nil, "kinesis: {stream: %s}", stream), 1)
	parsed, err := schema.Parse(tables, "tables.yaml")
	if err != nil || len(parsed) != 1 || parsed[0].SourceKind() != schema.SourceKinesis {
		return res, fmt.Errorf("kinesis benchmark: the sample table no longer reads `topic: events` (%v)", err)
	}
	tablesPath := filepath.Join(cfg.WorkDir, "tables.yaml")
	if err := os.WriteFile(tablesPath, tables, 0o644); err != nil {
		return res, err
	}
	config := fmt.Sprintf("tables_file: %q\nkinesis:\n  endpoint: %q\n  region: %q\n  access_key_id: %q\n  secret_access_key: %q\nstore:\n  local_dir: %q\nhttp:\n  addr: 127.0.0.1:0\ningest:\n%s\n",
		tablesPath, kc.Endpoint, kc.Region, kc.AccessKey, kc.SecretKey, filepath.Join(cfg.WorkDir, "lake"), indent(cfg.Ingest))
	return drain(ctx, cfg, res, config, kc.ServerPid)
}

func createStream(ctx context.Context, cl *kinesis.Client, stream string, shards int32) error {
	if _, err := cl.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String(stream), ShardCount: aws.Int32(shards)}); err != nil {
		return fmt.Errorf("create stream %s: %w", stream, err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		out, err := cl.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(stream)})
		if err == nil && out.StreamDescriptionSummary.StreamStatus == types.StreamStatusActive {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("stream %s not active after 60s", stream)
}

// putEvents generates cfg.Events events and puts them in batches of 500,
// putters calls at once; records the server refuses (throttled) are put
// again. It returns the events and bytes the server acknowledged.
func putEvents(ctx context.Context, cl *kinesis.Client, stream string, cfg IngestConfig, putters int) (int64, int64, error) {
	g, err := gen.New(gen.Config{Seed: cfg.Seed, Users: cfg.Users, ZipfS: cfg.ZipfS, Start: time.Now().UTC().Add(-time.Hour), EventsPerSecond: 1000})
	if err != nil {
		return 0, 0, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan []types.PutRecordsRequestEntry, putters)
	var (
		acked, ackedBytes atomic.Int64
		wg                sync.WaitGroup
		errOnce           sync.Once
		firstErr          error
	)
	fail := func(err error) {
		errOnce.Do(func() { firstErr = err; cancel() })
	}
	for range putters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for batch := range batches {
				n, size, err := putBatch(ctx, cl, stream, batch)
				acked.Add(n)
				ackedBytes.Add(size)
				if err != nil {
					fail(err)
					return
				}
			}
		}()
	}
	var buf []byte
	lastProgress := time.Now()
produce:
	for i := int64(0); i < cfg.Events; {
		n := min(int64(putRecordsMax), cfg.Events-i)
		batch := make([]types.PutRecordsRequestEntry, n)
		for k := range batch {
			var value, key []byte
			value, key, _ = g.Next(buf[:0])
			buf = value
			batch[k] = types.PutRecordsRequestEntry{Data: bytes.Clone(value), PartitionKey: aws.String(string(key))}
		}
		select {
		case batches <- batch:
		case <-ctx.Done():
			break produce
		}
		i += n
		if time.Since(lastProgress) > time.Second {
			cfg.Progress("produce", acked.Load(), cfg.Events)
			lastProgress = time.Now()
		}
	}
	close(batches)
	wg.Wait()
	if firstErr != nil {
		return acked.Load(), ackedBytes.Load(), firstErr
	}
	if err := ctx.Err(); err != nil {
		return acked.Load(), ackedBytes.Load(), err
	}
	cfg.Progress("produce", acked.Load(), cfg.Events)
	return acked.Load(), ackedBytes.Load(), nil
}

// putBatch puts one batch until every record is accepted (bounded: 100
// attempts), backing off when the server refuses records or the call.
func putBatch(ctx context.Context, cl *kinesis.Client, stream string, batch []types.PutRecordsRequestEntry) (int64, int64, error) {
	var n, size int64
	wait := 50 * time.Millisecond
	for attempt := 0; len(batch) > 0; attempt++ {
		if attempt >= 100 {
			return n, size, fmt.Errorf("put records to %s: %d still refused after 100 attempts", stream, len(batch))
		}
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return n, size, ctx.Err()
			case <-time.After(wait):
			}
			wait = min(2*wait, 2*time.Second)
		}
		out, err := cl.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: aws.String(stream), Records: batch})
		if err != nil {
			if ctx.Err() != nil {
				return n, size, ctx.Err()
			}
			continue
		}
		var again []types.PutRecordsRequestEntry
		for k, r := range out.Records {
			if r.ErrorCode != nil {
				again = append(again, batch[k])
				continue
			}
			n++
			size += int64(len(batch[k].Data))
		}
		batch = again
	}
	return n, size, nil
}
