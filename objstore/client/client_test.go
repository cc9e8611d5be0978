package client_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/objstore/client"
)

func TestNewBucketOpensTheConfiguredStore(t *testing.T) {
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	b, err := client.NewBucket(ctx, "raw", client.Config{LocalDir: t.TempDir()}, slog.New(slog.DiscardHandler), objstore.NewMetrics(reg))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Put(ctx, "t/a", bytes.NewReader([]byte("hello")), 5); err != nil {
		t.Fatal(err)
	}
	rc, err := b.Get(ctx, "t/a")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if string(got) != "hello" {
		t.Errorf("read %q, want hello", got)
	}
	// Every operation, the start-up probe's included, is counted under the
	// store's name.
	if n := operations(t, reg, "raw", "put"); n < 1 {
		t.Errorf("puts counted under raw = %v, want at least 1", n)
	}
}

func TestNewBucketRefusesAConfigWithoutAStore(t *testing.T) {
	_, err := client.NewBucket(context.Background(), "raw", client.Config{}, slog.New(slog.DiscardHandler), nil)
	if !errors.Is(err, client.ErrNoStore) {
		t.Fatalf("err = %v, want ErrNoStore", err)
	}
}

// operations is the count of one store's operations of one kind.
func operations(t *testing.T, reg *prometheus.Registry, store, op string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if mf.GetName() == "sluice_sink_object_operations_total" && labels["bucket"] == store && labels["operation"] == op {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no %s/%s series", store, op)
	return 0
}
